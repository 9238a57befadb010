"""Who may call: HS256 JWTs whose `scope` is `app` (for its own `app_id`) or
`admin`, that carry `exp`, and that live no longer than the configured maximum
(contract §9). With `HOOKBUS_JWT_ISSUER` / `HOOKBUS_JWT_AUDIENCE` set, a token
must also name that issuer (`iss`) and that audience (`aud`): a platform that
signs tokens for several services with one key keeps theirs out of Hookbus.
Without an audience configured, a token that names one is refused (PyJWT's
rule): it was meant for someone else."""

from __future__ import annotations

import time
from collections import OrderedDict

import jwt

from services.ingest.errors import ApiError

_ALGORITHMS = ["HS256"]
MIN_SECRET_BYTES = 32
DEFAULT_MAX_LIFETIME = 24 * 3600.0
DEFAULT_LIFETIME = 3600
# Tokens whose signature and claims were verified, kept so that a client's next
# request with the same token skips the HMAC and PyJWT's parsing (a fifth of
# ingest's CPU per published event in a burst, issue 13). Bounded: the least
# recently used go first, and only tokens of a usual size are kept.
VERIFIED_TOKENS = 1024
VERIFIED_TOKEN_MAX_CHARS = 2048


class _Verified:
    """A bounded LRU of token (with the secret, issuer and audience it was
    checked against) -> its claims. Only tokens that passed every check are
    in it; time moves on, so a hit is checked for expiry again (PyJWT's rule:
    expired once `exp` <= now; `nbf` and `iat` were in the past already)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._claims: OrderedDict[tuple[str, str, str | None, str | None], dict] = OrderedDict()

    def get(self, key: tuple[str, str, str | None, str | None]) -> dict | None:
        claims = self._claims.get(key)
        if claims is None:
            return None
        if int(claims["exp"]) <= time.time():
            del self._claims[key]
            raise jwt.ExpiredSignatureError("Signature has expired")
        self._claims.move_to_end(key)
        return dict(claims)

    def put(self, key: tuple[str, str, str | None, str | None], claims: dict) -> None:
        if len(key[0]) > VERIFIED_TOKEN_MAX_CHARS:
            return
        self._claims[key] = dict(claims)
        self._claims.move_to_end(key)
        while len(self._claims) > self._size:
            self._claims.popitem(last=False)

    def __len__(self) -> int:
        return len(self._claims)


_verified = _Verified(VERIFIED_TOKENS)


def _decode(token: str, secret: str, issuer: str | None, audience: str | None) -> dict:
    key = (token, secret, issuer, audience)
    claims = _verified.get(key)
    if claims is None:
        claims = jwt.decode(token, secret, algorithms=_ALGORITHMS, issuer=issuer,
                            audience=audience, options={"require": [
                                "exp", *(["iss"] if issuer else []), *(["aud"] if audience else [])]})
        _verified.put(key, claims)
    return claims


def authorize(authorization: str | None, secret: str, app_id: str | None, *,
              max_lifetime: float = DEFAULT_MAX_LIFETIME, now: float | None = None,
              issuer: str | None = None, audience: str | None = None) -> dict:
    """The token's claims if it may act on `app_id` (None: a route of no app)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "missing bearer token (Authorization: Bearer <JWT>)")
    token = authorization[len("Bearer "):].strip()
    try:
        claims = _decode(token, secret, issuer, audience)
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        what = {"exp": "an expiry (exp)", "iss": f"the issuer (iss) {issuer!r}",
                "aud": f"the audience (aud) {audience!r}"}.get(exc.claim, exc.claim)
        raise ApiError(401, f"invalid token: it must carry {what}") from None
    except jwt.InvalidIssuerError:
        raise ApiError(401, f"invalid token: its issuer (iss) is not {issuer!r}") from None
    except jwt.InvalidAudienceError:
        raise ApiError(401, f"invalid token: its audience (aud) does not include {audience!r}"
                       if audience else "invalid token: it names an audience (aud), and "
                       "HOOKBUS_JWT_AUDIENCE is not set") from None
    except jwt.InvalidTokenError:
        raise ApiError(401, "invalid token") from None
    now = time.time() if now is None else now
    issued = claims.get("iat")
    start = issued if isinstance(issued, int | float) and issued <= now else now
    exp = claims["exp"]
    try:  # PyJWT lets "123" and 10**400 through; `not <=` also refuses a NaN
        too_long = isinstance(exp, str | bool) or not exp - start <= max_lifetime
    except (TypeError, OverflowError):
        too_long = True
    if too_long:
        raise ApiError(401, f"invalid token: it lives longer than the {max_lifetime:g}s "
                            "allowed (HOOKBUS_JWT_MAX_LIFETIME)")
    scope = claims.get("scope")
    if scope == "admin":
        return claims
    if scope != "app" or not isinstance(claims.get("app_id"), str):
        raise ApiError(401, "invalid token: scope must be 'app' with an app_id, or 'admin'")
    if app_id is not None and claims["app_id"] != app_id:
        raise ApiError(403, f"this token is not valid for app {app_id}")
    return claims


def refuse_read_only_write(claims: dict, method: str) -> None:
    """A read-only token (a portal link's) may only read: 403 for anything but
    GET and HEAD. Any read_only claim but false counts (a malformed one errs on
    the safe side). Ingest and the event log both apply it."""
    if claims.get("read_only", False) is not False and method not in ("GET", "HEAD"):
        raise ApiError(403, "this token is read-only: it cannot change anything")


def issue_token(secret: str, *, scope: str, app_id: str | None = None,
                lifetime: int = DEFAULT_LIFETIME, issuer: str | None = None,
                audience: str | None = None, read_only: bool = False) -> str:
    """A token that expires `lifetime` seconds from now; `read_only`: the API
    refuses its writes (403), as it does for a read-only portal link's."""
    now = int(time.time())
    claims: dict[str, object] = {"scope": scope, "iat": now, "exp": now + lifetime}
    claims |= {"read_only": True} if read_only else {}
    claims |= ({"iss": issuer} if issuer else {}) | ({"aud": audience} if audience else {})
    return jwt.encode(claims | ({"app_id": app_id} if app_id else {}), secret, algorithm="HS256")
