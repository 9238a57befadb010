"""`/v1/apps/{app_id}/portal-links` (admin scope): a link to one app's console
that a platform puts in an iframe (issue 12). The link carries a short-lived
token of that app's scope (read-only if asked: the API then refuses its
writes) in the URL fragment, and the theme in its query."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web

from schemas.api import ErrorDetail
from schemas.portal_links import PortalLink, PortalLinkRequest
from services.ingest.auth import issue_token
from services.ingest.errors import ApiError
from services.ingest.http import authorized_claims, decode_body, json_response
from services.ingest.portal import portal_url, theme_problems
from services.ingest.state import INGEST

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/apps/{app_id}/portal-links", create_portal_link)


async def create_portal_link(request: web.Request) -> web.Response:
    app_id = request.match_info["app_id"]
    if authorized_claims(request, app_id).get("scope") != "admin":
        raise ApiError(403, "portal links are made with an admin token")
    settings = request.app[INGEST].settings
    body = (await decode_body(request, PortalLinkRequest) if await request.read()
            else PortalLinkRequest())
    problems = theme_problems(body.theme, allow_http=settings.target_policy.allow_http) \
        if body.theme is not None else []
    if body.expires_in > settings.jwt_max_lifetime:
        problems.append(ErrorDetail("expires_in", f"must be at most {settings.jwt_max_lifetime:g} "
                                                  "seconds (HOOKBUS_JWT_MAX_LIFETIME)"))
    if problems:
        raise ApiError.invalid(problems)
    token = issue_token(settings.jwt_secret, scope="app", app_id=app_id,
                        lifetime=body.expires_in, issuer=settings.jwt_issuer,
                        audience=settings.jwt_audience, read_only=body.read_only)
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=body.expires_in)
    base = settings.public_url or str(request.url.origin())
    # The token is not logged: only that a link was made, for whom.
    log.info("portal link made for app %s (read only: %s, %d s)", app_id, body.read_only,
             body.expires_in)
    return json_response(PortalLink(url=portal_url(base, token, body.theme),
                                    expires_at=expires_at), status=201)
