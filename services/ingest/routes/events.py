"""`/v1/apps/{app_id}/events`: publish one event, or a batch of them."""

from __future__ import annotations

import time

from aiohttp import web

from schemas.api import (
    MAX_BATCH,
    ErrorDetail,
    EventAccepted,
    EventBatch,
    EventIn,
    EventsAccepted,
)
from schemas.events import Event
from services.common.ids import new_id
from services.ingest.errors import ApiError
from services.ingest.http import authorized_app, decode_body, encoder, json_response, now
from services.ingest.idempotency import MAX_KEY_LENGTH, event_id_for
from services.ingest.state import INGEST, Ingest
from services.ingest.validation import event_problems


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/apps/{app_id}/events", publish_event)
    app.router.add_post("/v1/apps/{app_id}/events/batch", publish_batch)


async def publish_event(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    key = request.headers.get("Idempotency-Key")
    try:
        if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
            raise ApiError.invalid([ErrorDetail(
                "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")])
        body = await decode_body(request, EventIn)
        _validate_events([body], app_id, field_prefix="")
    except ApiError:
        ingest.metrics.events.labels("invalid").inc()
        raise
    if key is not None:
        seen = ingest.idempotency.seen(app_id, key, time.time())
        if seen is not None:
            ingest.metrics.events.labels("duplicate").inc()
            return json_response(EventAccepted(seen), status=202)
    event = _event(body, app_id, event_id_for(app_id, key) if key is not None else None)
    await _publish(ingest, [event])
    if key is not None:
        ingest.idempotency.remember(app_id, key, event.id, time.time())
    return json_response(EventAccepted(event.id), status=202)


async def publish_batch(request: web.Request) -> web.Response:
    """All or nothing: one invalid event refuses the batch and writes nothing."""
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    try:
        body = await decode_body(request, EventBatch)
        if not 0 < len(body.events) <= MAX_BATCH:
            raise ApiError.invalid([ErrorDetail("events", f"must hold 1 to {MAX_BATCH} events")])
        _validate_events(body.events, app_id, field_prefix="events.")
    except ApiError:
        ingest.metrics.events.labels("invalid").inc()
        raise
    events = [_event(e, app_id, None) for e in body.events]
    await _publish(ingest, events)
    return json_response(EventsAccepted([e.id for e in events]), status=202)


def _validate_events(events: list[EventIn], app_id: str, *, field_prefix: str) -> None:
    problems = []
    for n, event in enumerate(events):
        where = f"{field_prefix}{n}." if field_prefix else ""
        problems += [ErrorDetail(where + p.field, p.reason) for p in event_problems(event, app_id)]
    if problems:
        raise ApiError.invalid(problems)


def _event(body: EventIn, app_id: str, derived_id: str | None) -> Event:
    return Event(
        id=body.id or derived_id or new_id("evt"),
        type=body.type,
        app_id=app_id,
        created_at=body.created_at or now(),
        data=body.data,
    )


async def _publish(ingest: Ingest, events: list[Event]) -> None:
    try:
        await ingest.produce_all(
            ingest.topics.events, [(e.app_id, encoder.encode(e)) for e in events]
        )
    except ApiError:
        ingest.metrics.events.labels("unavailable").inc(len(events))
        raise
    ingest.metrics.events.labels("accepted").inc(len(events))
