"""`/v1/apps/{app_id}/webhooks/{id}/replay`: put a webhook's dead letters back
on `deliveries` (the reading is in `services.ingest.replay`)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiokafka.errors import KafkaError

from schemas.api import ErrorDetail, Replayed, ReplayRequest
from services.ingest.errors import ApiError
from services.ingest.http import authorized_app, decode_body, json_response, webhook_of
from services.ingest.replay import replay_dead_letters
from services.ingest.state import INGEST

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/replay", replay)


async def replay(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    webhook = webhook_of(request, app_id)
    body = await decode_body(request, ReplayRequest) if await request.read() else ReplayRequest()
    if body.since and body.until and body.since > body.until:
        raise ApiError.invalid([ErrorDetail("until", "must not be before since")])
    assert ingest.producer is not None
    log.info("replay of dead letters requested", extra={"webhook_id": webhook.id})
    try:
        count = await replay_dead_letters(
            ingest.settings.kafka, ingest.topics.deliveries_dlq,
            ingest.topics.deliveries, ingest.producer, webhook.id, body.since, body.until,
        )
    except KafkaError as exc:
        log.error("replay failed: %r", exc, extra={"webhook_id": webhook.id})
        raise ApiError(503, "the event store is unavailable; retry later") from exc
    return json_response(Replayed(count), status=202)
