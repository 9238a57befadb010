"""`/v1/apps/{app_id}/webhooks/{id}/attempts`: a webhook's delivery attempts,
newest first, a page at a time. Answered by the event log service (issue 11),
which validates `limit` and `cursor`; ingest authorizes, checks that the
webhook is the app's, and relays."""

from __future__ import annotations

from aiohttp import web

from services.ingest.http import authorized_app, relay_to_event_log, webhook_of


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}/attempts", list_attempts)


async def list_attempts(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    webhook_of(request, app_id)
    return await relay_to_event_log(request, app_id)
