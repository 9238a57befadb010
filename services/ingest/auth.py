"""Who may call: HS256 JWTs whose `scope` is `app` (for its own `app_id`) or `admin`."""

from __future__ import annotations

import jwt

from services.ingest.errors import ApiError

_ALGORITHMS = ["HS256"]


def authorize(authorization: str | None, secret: str, app_id: str | None) -> dict:
    """The token's claims if it may act on `app_id` (None: a route of no app)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "missing bearer token (Authorization: Bearer <JWT>)")
    token = authorization[len("Bearer "):].strip()
    try:
        claims = jwt.decode(token, secret, algorithms=_ALGORITHMS)
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token expired") from None
    except jwt.InvalidTokenError:
        raise ApiError(401, "invalid token") from None
    scope = claims.get("scope")
    if scope == "admin":
        return claims
    if scope != "app" or not isinstance(claims.get("app_id"), str):
        raise ApiError(401, "invalid token: scope must be 'app' with an app_id, or 'admin'")
    if app_id is not None and claims["app_id"] != app_id:
        raise ApiError(403, f"this token is not valid for app {app_id}")
    return claims


def issue_token(secret: str, *, scope: str, app_id: str | None = None) -> str:
    claims = {"scope": scope} | ({"app_id": app_id} if app_id else {})
    return jwt.encode(claims, secret, algorithm="HS256")
