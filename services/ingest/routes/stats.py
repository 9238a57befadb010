"""`/v1/apps/{app_id}/webhooks/{id}/stats`: a webhook's delivery counts, success
rate, latency, failure streak, dead letters and breaker. Answered by the event
log service (issue 11); ingest authorizes, checks that the webhook is the
app's, and relays."""

from __future__ import annotations

from aiohttp import web

from services.ingest.http import authorized_app, relay_to_event_log, webhook_of


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}/stats", webhook_stats)


async def webhook_stats(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    webhook_of(request, app_id)
    return await relay_to_event_log(request, app_id)
