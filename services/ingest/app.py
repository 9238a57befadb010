"""The ingest service: the management API and event ingestion (contract §6).

Every write is acknowledged by Kafka (acks=all, idempotent producer) before the
client hears success; every error has the contract's shape and writes nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import TypeVar

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from swagger_ui_bundle import swagger_ui_path

from schemas.api import (
    MAX_BATCH,
    AttemptsPage,
    Replayed,
    ReplayRequest,
    ErrorDetail,
    EventAccepted,
    EventBatch,
    EventIn,
    EventsAccepted,
    EventTypeOut,
    EventTypes,
    SecretRotated,
    SecretRotation,
    WebhookCreate,
    WebhookList,
    WebhookOut,
    WebhookPatch,
)
from schemas.deliveries import DeliveryTask
from schemas.event_types import DEFAULT_TRIGGERS, EVENT_TYPES, VOCABULARIES, WILDCARD
from schemas.events import Event
from schemas.webhooks import ClientCredentials, RetiredSecret, Webhook
from services.common.ids import new_id
from services.common.secrets import generate_secret
from services.common.topics import Topics, missing_topics
from services.common.webhooks_view import WebhooksView
from services.ingest.attempts_log import AttemptsLog
from services.ingest.auth import authorize
from services.ingest.errors import ApiError, decode_error
from services.ingest.idempotency import MAX_KEY_LENGTH, IdempotencyKeys, event_id_for
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import openapi_document
from services.ingest.replay import replay_dead_letters
from services.ingest.settings import Settings
from services.ingest.validation import event_problems, webhook_problems

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
T = TypeVar("T")
_encoder = msgspec.json.Encoder()


class Ingest:
    """The state one ingest instance shares between its handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = IngestMetrics()
        self.view = WebhooksView(settings.kafka.bootstrap, self.topics.webhooks)
        self.attempts = AttemptsLog(settings.kafka.bootstrap, self.topics.attempts)
        self.idempotency = IdempotencyKeys()
        self.producer: AIOKafkaProducer | None = None
        self.admin: AIOKafkaAdminClient | None = None

    async def produce(self, topic: str, key: str, value: bytes | None) -> None:
        """Write one record and wait for Kafka's acknowledgement."""
        assert self.producer is not None
        try:
            await self.producer.send_and_wait(topic, value, key=key.encode())
        except KafkaError as exc:
            log.error("kafka write to %s failed: %r", topic, exc)
            raise ApiError(503, "the event store is unavailable; retry later") from exc

    async def produce_all(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Write several records at once and wait until Kafka acknowledged all."""
        assert self.producer is not None
        try:
            sent = [await self.producer.send(topic, value, key=key.encode())
                    for key, value in records]
            await asyncio.gather(*sent)
        except KafkaError as exc:
            log.error("kafka write to %s failed: %r", topic, exc)
            raise ApiError(503, "the event store is unavailable; retry later") from exc

    async def readiness(self) -> str | None:
        if self.producer is None or self.admin is None:
            return "starting"
        if not self.view.ready.is_set():
            return "loading webhooks"
        try:
            names = [self.topics.events, self.topics.webhooks]
            missing = await asyncio.wait_for(missing_topics(self.admin, names), 2)
        except (KafkaError, TimeoutError) as exc:
            return f"kafka unreachable: {exc!r}"
        return f"missing topics: {', '.join(missing)}" if missing else None


INGEST = web.AppKey("ingest", Ingest)
EVENT_TYPES_BODY = web.AppKey("event_types_body", bytes)
OPENAPI_BODY = web.AppKey("openapi_body", bytes)
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hookbus API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors_and_metrics])
    app[INGEST] = Ingest(settings)
    app[EVENT_TYPES_BODY] = _event_types_body()
    app[OPENAPI_BODY] = _encoder.encode(openapi_document(version("hookbus")))
    app.cleanup_ctx.append(_kafka)
    app.router.add_post("/v1/apps/{app_id}/webhooks", create_webhook)
    app.router.add_get("/v1/apps/{app_id}/webhooks", list_webhooks)
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}", get_webhook)
    app.router.add_patch("/v1/apps/{app_id}/webhooks/{webhook_id}", patch_webhook)
    app.router.add_delete("/v1/apps/{app_id}/webhooks/{webhook_id}", delete_webhook)
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/secret/rotate", rotate_secret)
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/test", test_webhook)
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}/attempts", list_attempts)
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/replay", replay)
    app.router.add_post("/v1/apps/{app_id}/events", publish_event)
    app.router.add_post("/v1/apps/{app_id}/events/batch", publish_batch)
    app.router.add_get("/v1/event-types", event_types)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_static("/docs/static", swagger_ui_path)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    ingest = app[INGEST]
    bootstrap = ingest.settings.kafka.bootstrap
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await producer.start()
    await admin.start()
    for follower_task in (await ingest.view.start(), await ingest.attempts.follower.start()):
        follower_task.add_done_callback(_fatal_if_failed)
    ingest.producer, ingest.admin = producer, admin
    log.info("ingest connected to kafka at %s", bootstrap)
    try:
        yield
    finally:
        await ingest.view.stop()
        await ingest.attempts.follower.stop()
        await producer.stop()
        await admin.close()


def _fatal_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("following %s failed; exiting", task.get_name(), exc_info=task.exception())
        raise SystemExit(70)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = request.headers.get("X-Request-Id") or new_id("req")
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error_response(exc)
    except web.HTTPException as exc:  # routing: 404, 405; body size: 413
        if exc.status < 400:
            raise
        response = _error_response(ApiError(exc.status, exc.reason or "error"))
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        response = _error_response(ApiError(500, f"internal error (request id {request_id})"))
    response.headers["X-Request-Id"] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[INGEST].metrics.request_duration.labels(
        route, request.method, str(response.status)
    ).observe(time.perf_counter() - started)
    return response


def _error_response(exc: ApiError) -> web.Response:
    return web.Response(status=exc.code, body=exc.body(), content_type="application/json")


def _json(struct: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(struct), content_type="application/json")


async def _decode(request: web.Request, type_: type[T]) -> T:
    body = await request.read()
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None


def _authorized_app(request: web.Request) -> str:
    app_id = request.match_info["app_id"]
    authorize(request.headers.get("Authorization"), request.app[INGEST].settings.jwt_secret, app_id)
    return app_id


def _webhook_of(request: web.Request, app_id: str) -> Webhook:
    webhook_id = request.match_info["webhook_id"]
    webhook = request.app[INGEST].view.get(webhook_id)
    if webhook is None or webhook.app_id != app_id:
        raise ApiError(404, f"no webhook {webhook_id} in app {app_id}")
    return webhook


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def create_webhook(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    body = await _decode(request, WebhookCreate)
    _validate_webhook(body, ingest)
    limit = ingest.settings.max_webhooks_per_app
    if len(ingest.view.of_app(app_id)) >= limit:
        raise ApiError(409, f"app {app_id} already has {limit} webhooks, the most allowed")
    now = _now()
    webhook = Webhook(
        id=new_id("wh"),
        app_id=app_id,
        target=body.target,
        triggers=body.triggers if body.triggers is not None else list(DEFAULT_TRIGGERS),
        secret=body.secret or generate_secret(),
        created_at=now,
        updated_at=now,
        target_type=body.target_type,
        client_credentials=body.client_credentials,
        headers=body.headers,
        description=body.description,
        enabled=body.enabled,
    )
    await _save(ingest, webhook)
    log.info("webhook created", extra={"webhook_id": webhook.id})
    return _json(WebhookOut.of(webhook, with_secret=True), status=201)


def _validate_webhook(body: WebhookCreate, ingest: Ingest) -> None:
    problems = webhook_problems(body, ingest.settings.target_policy)
    if problems:
        raise ApiError.invalid(problems)


async def _save(ingest: Ingest, webhook: Webhook) -> None:
    await ingest.produce(ingest.topics.webhooks, webhook.id, _encoder.encode(webhook))
    ingest.view.put(webhook)


async def patch_webhook(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    current = _webhook_of(request, app_id)
    patch = await _decode(request, WebhookPatch)
    merged = WebhookCreate(**{
        name: getattr(patch, name) if getattr(patch, name) is not msgspec.UNSET
        else getattr(current, name)
        for name in WebhookPatch.__struct_fields__
    } | {"client_credentials": _credentials_in(patch, current)})
    _validate_webhook(merged, ingest)
    reenabled = merged.enabled and not current.enabled
    webhook = msgspec.structs.replace(
        current,
        target=merged.target,
        triggers=merged.triggers or [],
        target_type=merged.target_type,
        client_credentials=merged.client_credentials,
        headers=merged.headers,
        description=merged.description,
        enabled=merged.enabled,
        disabled_reason=None if reenabled else current.disabled_reason,
        updated_at=_now(),
    )
    await _save(ingest, webhook)
    log.info("webhook updated", extra={"webhook_id": webhook.id})
    return _json(WebhookOut.of(webhook, with_secret=True))


def _credentials_in(patch: WebhookPatch, current: Webhook) -> ClientCredentials | None:
    if patch.client_credentials is not msgspec.UNSET:
        return patch.client_credentials
    return current.client_credentials


async def rotate_secret(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    current = _webhook_of(request, app_id)
    body = await _decode(request, SecretRotation) if await request.read() else SecretRotation()
    if body.secret is not None and not 0 < len(body.secret) <= 256:
        raise ApiError.invalid([ErrorDetail("secret", "must be 1 to 256 characters")])
    now = _now()
    overlap = timedelta(seconds=ingest.settings.secret_rotation_overlap)
    retired = [RetiredSecret(secret=current.secret, expires_at=now + overlap)]
    retired += [r for r in current.retired_secrets if r.expires_at > now]
    webhook = msgspec.structs.replace(
        current, secret=body.secret or generate_secret(), retired_secrets=retired, updated_at=now
    )
    await _save(ingest, webhook)
    log.info("webhook secret rotated", extra={"webhook_id": webhook.id})
    return _json(SecretRotated(webhook.secret))


async def test_webhook(request: web.Request) -> web.Response:
    """A `webhook.test` event, written straight to `deliveries` for this webhook
    only: no trigger can match it."""
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    webhook = _webhook_of(request, app_id)
    if not webhook.enabled:
        raise ApiError(409, f"webhook {webhook.id} is disabled; enable it to test it")
    event = Event(id=new_id("evt"), type="webhook.test", app_id=app_id, created_at=_now(),
                  data={"webhook_id": webhook.id})
    task = DeliveryTask(
        webhook_id=webhook.id, app_id=app_id, event_id=event.id, event_type=event.type,
        event_created_at=event.created_at, body=msgspec.Raw(_encoder.encode(event)),
    )
    await ingest.produce(ingest.topics.deliveries, webhook.id, _encoder.encode(task))
    return _json(EventAccepted(event.id), status=202)


MAX_ATTEMPTS_PAGE = 100


async def list_attempts(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    webhook = _webhook_of(request, app_id)
    problems = []
    try:
        limit = int(request.query.get("limit", "20"))
        if not 1 <= limit <= MAX_ATTEMPTS_PAGE:
            raise ValueError
    except ValueError:
        problems.append(ErrorDetail("limit", f"must be an integer from 1 to {MAX_ATTEMPTS_PAGE}"))
    cursor = request.query.get("cursor")
    if cursor is not None and not cursor.isdigit():
        problems.append(ErrorDetail("cursor", "not a cursor this API gave"))
    if problems:
        raise ApiError.invalid(problems)
    attempts, next_cursor = request.app[INGEST].attempts.page(
        webhook.id, limit, None if cursor is None else int(cursor))
    return _json(AttemptsPage(
        attempts=attempts, next_cursor=None if next_cursor is None else str(next_cursor)))


async def replay(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    webhook = _webhook_of(request, app_id)
    body = await _decode(request, ReplayRequest) if await request.read() else ReplayRequest()
    if body.since and body.until and body.since > body.until:
        raise ApiError.invalid([ErrorDetail("until", "must not be before since")])
    assert ingest.producer is not None
    log.info("replay of dead letters requested", extra={"webhook_id": webhook.id})
    try:
        count = await replay_dead_letters(
            ingest.settings.kafka.bootstrap, ingest.topics.deliveries_dlq,
            ingest.topics.deliveries, ingest.producer, webhook.id, body.since, body.until,
        )
    except KafkaError as exc:
        log.error("replay failed: %r", exc, extra={"webhook_id": webhook.id})
        raise ApiError(503, "the event store is unavailable; retry later") from exc
    return _json(Replayed(count), status=202)


async def list_webhooks(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    webhooks = request.app[INGEST].view.of_app(app_id)
    return _json(WebhookList([WebhookOut.of(w, with_secret=False) for w in webhooks]))


async def get_webhook(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    return _json(WebhookOut.of(_webhook_of(request, app_id), with_secret=True))


async def delete_webhook(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    webhook = _webhook_of(request, app_id)
    await ingest.produce(ingest.topics.webhooks, webhook.id, None)
    ingest.view.delete(webhook.id)
    log.info("webhook deleted", extra={"webhook_id": webhook.id})
    return web.Response(status=204)


async def publish_event(request: web.Request) -> web.Response:
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    key = request.headers.get("Idempotency-Key")
    try:
        if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
            raise ApiError.invalid([ErrorDetail(
                "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")])
        body = await _decode(request, EventIn)
        _validate_events([body], app_id, field_prefix="")
    except ApiError:
        ingest.metrics.events.labels("invalid").inc()
        raise
    if key is not None:
        seen = ingest.idempotency.seen(app_id, key, time.time())
        if seen is not None:
            ingest.metrics.events.labels("duplicate").inc()
            return _json(EventAccepted(seen), status=202)
    event = _event(body, app_id, event_id_for(app_id, key) if key is not None else None)
    await _publish(ingest, [event])
    if key is not None:
        ingest.idempotency.remember(app_id, key, event.id, time.time())
    return _json(EventAccepted(event.id), status=202)


async def publish_batch(request: web.Request) -> web.Response:
    """All or nothing: one invalid event refuses the batch and writes nothing."""
    app_id = _authorized_app(request)
    ingest = request.app[INGEST]
    try:
        body = await _decode(request, EventBatch)
        if not 0 < len(body.events) <= MAX_BATCH:
            raise ApiError.invalid([ErrorDetail("events", f"must hold 1 to {MAX_BATCH} events")])
        _validate_events(body.events, app_id, field_prefix="events.")
    except ApiError:
        ingest.metrics.events.labels("invalid").inc()
        raise
    events = [_event(e, app_id, None) for e in body.events]
    await _publish(ingest, events)
    return _json(EventsAccepted([e.id for e in events]), status=202)


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
        created_at=body.created_at or _now(),
        data=body.data,
    )


async def _publish(ingest: Ingest, events: list[Event]) -> None:
    try:
        await ingest.produce_all(
            ingest.topics.events, [(e.app_id, _encoder.encode(e)) for e in events]
        )
    except ApiError:
        ingest.metrics.events.labels("unavailable").inc(len(events))
        raise
    ingest.metrics.events.labels("accepted").inc(len(events))


def _event_types_body() -> bytes:
    return _encoder.encode(EventTypes(
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


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_BODY], content_type="application/json")


async def docs(_: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    reason = await request.app[INGEST].readiness()
    if reason is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    ingest.metrics.webhooks.set(len(ingest.view))
    return web.Response(
        body=generate_latest(ingest.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
