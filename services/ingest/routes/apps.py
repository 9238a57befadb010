"""`/v1/apps` (admin scope): the apps that have webhooks, with how many and how
many are disabled — what the operator's console lists (issue 12). An app is
known to Hookbus by its webhooks: one without any is not listed."""

from __future__ import annotations

from aiohttp import web

from schemas.portal_links import AppList, AppSummary
from services.ingest.errors import ApiError
from services.ingest.http import authorized_claims, json_response
from services.ingest.state import INGEST


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/apps", list_apps)


async def list_apps(request: web.Request) -> web.Response:
    if authorized_claims(request, None).get("scope") != "admin":
        raise ApiError(403, "listing apps needs an admin token")
    view = request.app[INGEST].view
    counts: dict[str, list[int]] = {}
    for webhook_id in view.ids():
        webhook = view.get(webhook_id)
        if webhook is not None:
            count = counts.setdefault(webhook.app_id, [0, 0])
            count[0] += 1
            count[1] += not webhook.enabled
    return json_response(AppList(apps=[
        AppSummary(app_id=app_id, webhooks=total, disabled=disabled)
        for app_id, (total, disabled) in sorted(counts.items())]))
