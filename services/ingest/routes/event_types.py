"""`/v1/event-types`: the event-type table of contract §5, as data."""

from __future__ import annotations

from aiohttp import web

from schemas.api import EventTypeOut, EventTypes
from schemas.event_types import EVENT_TYPES, VOCABULARIES, WILDCARD
from services.ingest.http import encoder

EVENT_TYPES_BODY = web.AppKey("event_types_body", bytes)


def add_routes(app: web.Application) -> None:
    app[EVENT_TYPES_BODY] = _event_types_body()
    app.router.add_get("/v1/event-types", event_types)


def _event_types_body() -> bytes:
    return encoder.encode(EventTypes(
        event_types=[
            EventTypeOut(
                type=t.type, description=t.description,
                aliases={v: list(getattr(t, v)) for v in VOCABULARIES if getattr(t, v)},
            )
            for t in EVENT_TYPES
        ],
        wildcards=[WILDCARD, "<resource>.*"],
    ))


async def event_types(request: web.Request) -> web.Response:
    return web.Response(body=request.app[EVENT_TYPES_BODY], content_type="application/json")
