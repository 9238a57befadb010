"""`/v1/apps/{app_id}/events`: publish one event, or a batch of them; list an
app's events, look one up, resend it. The last three are answered by the event
log service (issue 11), which validates the query and body; ingest authorizes
and relays."""

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
from services.ingest.http import (
    authorized_app,
    decode_body,
    encoder,
    json_response,
    now,
    relay_to_event_log,
)
from services.ingest.idempotency import MAX_KEY_LENGTH, batch_event_id, event_id_for
from services.ingest.state import INGEST, Ingest
from services.ingest.validation import event_problems


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/apps/{app_id}/events", publish_event)
    app.router.add_post("/v1/apps/{app_id}/events/batch", publish_batch)
    app.router.add_get("/v1/apps/{app_id}/events", list_events)
    app.router.add_get("/v1/apps/{app_id}/events/{event_id}", get_event)
    app.router.add_post("/v1/apps/{app_id}/events/{event_id}/resend", resend_event)


async def list_events(request: web.Request) -> web.Response:
    """Newest first, a page at a time; filters `type`, `status`, `since`, `until`."""
    return await relay_to_event_log(request, authorized_app(request))


async def get_event(request: web.Request) -> web.Response:
    """The envelope, and each matching webhook's status and attempts."""
    return await relay_to_event_log(request, authorized_app(request))


async def resend_event(request: web.Request) -> web.Response:
    """A new attempt series of the event (same `webhook-id`), to one webhook or all."""
    return await relay_to_event_log(request, authorized_app(request))


async def publish_event(request: web.Request) -> web.Response:
    """One event. With an `Idempotency-Key`: see services/ingest/idempotency.py."""
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    try:
        key = _idempotency_key(request)
        body = await decode_body(request, EventIn)
        _validate_events([body], app_id, field_prefix="")
    except ApiError:
        ingest.metrics.events.labels("invalid").inc()
        raise
    if key is None:
        event = _event(body, app_id, new_id("evt"))
        await _publish(ingest, [event], atomically=False)
        return json_response(EventAccepted(event.id), status=202)

    at, ttl = time.time(), ingest.settings.idempotency_ttl
    claim = (await ingest.idempotency_keys()).claim(app_id, key, at, ttl)
    if claim.known is not None:
        ingest.metrics.events.labels("duplicate").inc()
        return json_response(EventAccepted(claim.known.event_id), status=202)
    event = _event(body, app_id, event_id_for(app_id, key, claim.window))
    await _publish(ingest, [event], atomically=False)
    await ingest.remember_key(claim.digest, claim.record(event.id, 1, at, ttl))
    return json_response(EventAccepted(event.id), status=202)


async def publish_batch(request: web.Request) -> web.Response:
    """All or nothing: one invalid event refuses the batch and writes nothing, and
    a valid batch is written in one Kafka transaction. With an `Idempotency-Key`,
    a retry within its TTL answers the same ids and writes nothing (the ids are
    derived from the key, the window and each event's index)."""
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    try:
        key = _idempotency_key(request)
        body = await decode_body(request, EventBatch)
        if not 0 < len(body.events) <= MAX_BATCH:
            raise ApiError.invalid([ErrorDetail("events", f"must hold 1 to {MAX_BATCH} events")])
        _validate_events(body.events, app_id, field_prefix="events.")
    except ApiError:
        ingest.metrics.events.labels("invalid").inc()
        raise
    if key is None:
        events = [_event(e, app_id, new_id("evt")) for e in body.events]
        await _publish(ingest, events, atomically=True)
        return json_response(EventsAccepted([e.id for e in events]), status=202)

    at, ttl = time.time(), ingest.settings.idempotency_ttl
    claim = (await ingest.idempotency_keys()).claim(app_id, key, at, ttl, batch=True)
    if claim.known is not None and claim.known.count != len(body.events):
        ingest.metrics.events.labels("invalid").inc()
        raise ApiError.invalid([ErrorDetail(
            "Idempotency-Key", f"was used for a batch of {claim.known.count} events; "
                               "a retry must send the same batch")])
    events = [_event(e, app_id, batch_event_id(app_id, key, claim.window, n))
              for n, e in enumerate(body.events)]
    if claim.known is not None:
        ingest.metrics.events.labels("duplicate").inc(len(events))
        return json_response(EventsAccepted([e.id for e in events]), status=202)
    await _publish(ingest, events, atomically=True)
    await ingest.remember_key(claim.digest, claim.record(events[0].id, len(events), at, ttl))
    return json_response(EventsAccepted([e.id for e in events]), status=202)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ApiError.invalid([ErrorDetail(
            "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")])
    if key is not None and not key.isprintable():  # aiohttp keeps bytes not UTF-8 as
        raise ApiError.invalid([ErrorDetail(      # lone surrogates: not printable
            "Idempotency-Key", "must be printable UTF-8 text")])
    return key


def _validate_events(events: list[EventIn], app_id: str, *, field_prefix: str) -> None:
    problems = []
    for n, event in enumerate(events):
        where = f"{field_prefix}{n}." if field_prefix else ""
        problems += [ErrorDetail(where + p.field, p.reason) for p in event_problems(event, app_id)]
    if problems:
        raise ApiError.invalid(problems)


def _event(body: EventIn, app_id: str, derived_id: str) -> Event:
    """The envelope to write: the producer's id wins over a derived one."""
    return Event(
        id=body.id or derived_id,
        type=body.type,
        app_id=app_id,
        created_at=body.created_at or now(),
        data=body.data,
    )


async def _publish(ingest: Ingest, events: list[Event], *, atomically: bool) -> None:
    topic = ingest.topics.events
    try:
        if atomically:
            await ingest.produce_atomically(topic, [(e.app_id, encoder.encode(e)) for e in events])
        else:
            for event in events:
                await ingest.produce(topic, event.app_id, encoder.encode(event))
    except ApiError as exc:
        outcome = "invalid" if exc.code == 413 else "unavailable"
        ingest.metrics.events.labels(outcome).inc(len(events))
        raise
    ingest.metrics.events.labels("accepted").inc(len(events))
