"""`/v1/apps/{app_id}/webhooks/{id}/replay`: put a webhook's dead letters back on
`deliveries` as a replay job (202, the job), and follow the job's progress.
Answered by the event log service (issue 11), which validates the body; ingest
authorizes, checks that the webhook is the app's, and relays."""

from __future__ import annotations

import logging

from aiohttp import web

from services.ingest.http import authorized_app, relay_to_event_log, webhook_of

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/replay", replay)
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}/replay/{job_id}", replay_job)


async def replay(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    webhook = webhook_of(request, app_id)
    log.info("replay of dead letters requested", extra={"webhook_id": webhook.id})
    return await relay_to_event_log(request, app_id)


async def replay_job(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    webhook_of(request, app_id)
    return await relay_to_event_log(request, app_id)
