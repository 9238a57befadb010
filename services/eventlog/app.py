"""The event log service (issue 11; docs/design/event-log.md): a Faust app whose
one table, on RocksDB with a changelog and standby replicas, holds each app's
events, deliveries, attempts and counters in the partition that owns the app,
and an HTTP server answering the event log's routes for the apps it owns.

- **Agents.** `rekey` reads `attempts` (keyed by webhook) and writes each
  record, with its partition and offset, to `eventlog.updates` keyed by its
  app; `file` reads `eventlog.updates` (the router's `Routed` records and
  those) and files them (fold.py) in the partition of the table the record
  came from, which is the app's (a record in another partition than its app's
  is skipped: only murmur2-keyed writers put it there).
- **Nothing lost.** Both read `noack` streams and acknowledge a record only
  once its outputs are acknowledged by Kafka (the update, or every changelog
  write it made), in offset order; any other failure ends the process before
  the offset can be committed (as the router does), and the records are read
  again: filing is idempotent.
- **Reads** go to the instance that actively owns the app's partition (the
  group's assignment, published at `GET /internal/owners`); another answers
  421, and every instance 503 while it rebalances or restores.
- **Expiry**: a timer deletes what expired (T keys) from the partitions this
  instance owns, tombstones to the changelog included.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

import faust
import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, \
    generate_latest

from schemas.api import ErrorDetail, ReplayRequest
from schemas.attempts import attempt_decoder
from schemas.deliveries import DeliveryTask
from schemas.eventlog import Filed, update_decoder, update_encoder
from schemas.eventlog_api import ReplayJob, ResendRequest, Resent
from services.common.ids import new_id
from services.common.kafka_clients import (
    BACKGROUND_LINGER_MS,
    LATENCY_LINGER_MS,
    client_options,
    faust_options,
)
from services.common.topics import Topics
from services.eventlog import fold, keys, queries, replay
from services.eventlog.batching import take_events_soon
from services.eventlog.envelopes import Envelopes, Unavailable
from services.eventlog.settings import Settings
from services.eventlog.store import Overlay, Store
from services.eventlog.table import NotOpen, PartitionStore, quiesce
from services.ingest.auth import authorize, refuse_read_only_write
from services.ingest.errors import ApiError
from services.ingest.http import decode_body, error_response, json_response
from services.router.in_order_acks import InOrderAcks

log = logging.getLogger(__name__)
EXIT_UNFINISHED = 70
REKEY_CONCURRENCY = 16
FILE_BATCH = 500
SWEEP_SECONDS = 60.0
SWEEP_BUDGET = 5000
MAX_EVENTS_PAGE = 250
MAX_ATTEMPTS_PAGE = 100
KEPT_JOBS = 20  # a webhook's replay jobs kept, the newest
TABLE = "log"
APP_KEY: web.AppKey[EventLog] = web.AppKey("eventlog")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.updates = Counter("hookbus_eventlog_updates_total",
                               "eventlog.updates records filed, by outcome.", ["outcome"],
                               registry=self.registry)
        self.rekeyed = Counter("hookbus_eventlog_rekeyed_total",
                               "attempts records re-keyed by app, by outcome.", ["outcome"],
                               registry=self.registry)
        self.swept = Counter("hookbus_eventlog_expired_keys_total",
                             "Table keys deleted by the retention sweep.", registry=self.registry)
        self.replayed = Counter("hookbus_eventlog_replayed_total",
                                "Dead letters re-enqueued by replay jobs.", registry=self.registry)
        self.resent = Counter("hookbus_eventlog_resent_total",
                              "Delivery tasks written by resends.", registry=self.registry)
        self.partitions = Gauge("hookbus_eventlog_partitions",
                                "Table partitions held, by role.", ["role"],
                                registry=self.registry)
        self.request_duration = Histogram(
            "hookbus_http_request_duration_seconds", "Event log API requests.",
            ["route", "method", "code"], registry=self.registry)


class EventLog:
    def __init__(self, settings: Settings, partitions: int) -> None:
        self.settings = settings
        self.partitions = partitions
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = Metrics()
        self.app = faust.App(
            f"{settings.kafka.topic_prefix}eventlog",
            **faust_options(settings.kafka),
            store="rocksdb://",
            datadir=settings.data_dir,
            processing_guarantee="at_least_once",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            canonical_url=settings.url,
            topic_allow_declare=False,
            topic_disable_leader=True,
            table_standby_replicas=settings.standby_replicas,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            # The rekey agent's updates: each actor awaits one's acknowledgement
            # before its next record, so a linger caps re-keying at
            # REKEY_CONCURRENCY / linger (20 ms: ~650 attempts/s).
            producer_linger=LATENCY_LINGER_MS / 1000,
        )
        self.table = self.app.Table(
            TABLE, key_type=bytes, value_type=bytes, partitions=partitions,
            # Small caches: memory follows the partitions held, not rocksdb's
            # 2 GiB block cache per partition.
            options={"block_cache_size": 8 << 20, "write_buffer_size": 8 << 20,
                     "max_write_buffer_number": 2},
        )
        self.changelog = f"{self.app.conf.id}-{TABLE}-changelog"
        self._updates = self.app.topic(self.topics.eventlog_updates)
        self.app.agent(self.app.topic(self.topics.attempts), name="rekey",
                       concurrency=REKEY_CONCURRENCY)(self._rekey)
        self.app.agent(self._updates, name="file")(self._file)
        self._acks: InOrderAcks[faust.types.EventT] = InOrderAcks()
        self._assigned = False
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.envelopes = Envelopes(settings.kafka, self.topics)
        self.producer: AIOKafkaProducer | None = None
        self.producer_ready = asyncio.Event()
        self.jobs: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._replay_requests: set[tuple[str, str]] = set()
        self._resumed_generation: int | None = None

    # -- ownership -------------------------------------------------------------
    async def _on_assigned(self, sender: object, assigned: object, **_: object) -> None:
        generation = self.app.consumer_generation_id
        self._acks.forget(lambda partition: partition[2] == generation)  # type: ignore[index]
        self._assigned = True

    async def _on_revoked(self, sender: object, revoked: object, **_: object) -> None:
        """Faust waited for the agents' events; the sweep's and the replay
        jobs' commits in flight are waited for here, so that none sends to a
        partition's changelog once the group may have given it to another
        instance (new ones refuse: `_may_write`)."""
        await quiesce(self.table)

    def _may_write(self, partition: int, generation: int | None) -> bool:
        """Whether a timer or a task (not an agent: Faust's revocation waits for
        those) may commit to the partition now: this instance owns it in the
        generation in which the commit's inputs were read, restored, outside a
        rebalance."""
        return self.app.consumer_generation_id == generation and self.busy() is None \
            and self.owns(partition)

    async def _send_changelog(self, partition: int, key: bytes,
                              value: bytes | None) -> asyncio.Future:
        """One changelog record, through the service's own idempotent producer
        (acks=all), not Faust's buffered one: a send that cannot be made fails
        the commit instead of waiting for ever in Faust's buffer."""
        await self.producer_ready.wait()
        assert self.producer is not None
        return await self.producer.send(self.changelog, value, key=key, partition=partition)

    def owns(self, partition: int) -> bool:
        return self.app.assignor.is_active(TP(self.changelog, partition))

    def busy(self) -> str | None:
        """Why no partition can be read now, if none can."""
        if not self._assigned:
            return "waiting for the first partition assignment"
        if self.app.rebalancing:
            return "rebalancing"
        if self.app.tables.recovery.in_recovery:
            return "restoring the table from its changelog"
        return None

    def owners(self) -> dict[str, str]:
        urls: dict[str, str] = {}
        for url, topics in self.app.assignor.table_metadata(self.changelog).items():
            for partition in topics.get(self.changelog, []):
                urls[str(partition)] = str(url).rstrip("/")
        return urls

    def store_for(self, app_id: str) -> PartitionStore:
        """The store of the app's partition, if this instance may answer for it
        now; else a 503 or a 421."""
        try:
            partition = keys.partition_of(app_id, self.partitions)
        except Exception:
            raise ApiError(404, f"no app {app_id!r}") from None
        why = self.busy()
        if why is not None:
            raise ApiError(503, f"the event log is {why}; retry in a few seconds")
        if not self.owns(partition):
            raise ApiError(421, f"partition {partition} is not held by this instance")
        try:
            return PartitionStore(self.table, partition)
        except NotOpen:
            raise ApiError(503, "the event log is moving partitions; retry in a few "
                                "seconds") from None

    def readiness(self) -> str | None:
        return self.busy()

    # -- the agents ------------------------------------------------------------
    async def _rekey(self, stream: faust.StreamT) -> None:
        manual = stream.noack()
        message = None
        try:
            async for event in manual.events():
                message = event.message
                partition = (message.topic, message.partition, message.generation_id)
                self._acks.taken(partition, message.offset, event)
                update = self._rekeyed(message)
                if update is not None:
                    key, value = update
                    await (await self._updates.send(key=key, value=value))
                for done in self._acks.finished(partition, message.offset):
                    if done.message.generation_id == self.app.consumer_generation_id:
                        await manual.ack(done)
                message = None
        except Exception as exc:
            _exit_unfinished(message, exc)

    def _rekeyed(self, message: Any) -> tuple[bytes, bytes] | None:
        if message.value is None:
            self.metrics.rekeyed.labels("skipped").inc()
            return None
        try:
            attempt = attempt_decoder.decode(message.value)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            log.error("skipping an undecodable attempts record %s/%d@%d: %s", message.topic,
                      message.partition, message.offset, exc)
            self.metrics.rekeyed.labels("skipped").inc()
            return None
        if not attempt.app_id:
            self.metrics.rekeyed.labels("no_app").inc()
            return None
        self.metrics.rekeyed.labels("rekeyed").inc()
        filed = Filed(attempt=attempt, partition=message.partition, offset=message.offset)
        return attempt.app_id.encode(), update_encoder.encode(filed)

    async def _file(self, stream: faust.StreamT) -> None:
        manual = stream.noack()
        message = None
        try:
            async for batch in take_events_soon(manual, FILE_BATCH, within=0.05):
                message = batch[0].message if batch else None
                await self._file_batch(batch)
                generation = self.app.consumer_generation_id
                for event in batch:
                    if event.message.generation_id == generation:
                        await manual.ack(event)
                message = None
        except Exception as exc:
            _exit_unfinished(message, exc)

    async def _file_batch(self, batch: list[Any]) -> None:
        """File a batch, one partition at a time, each in one commit. The
        stores live no longer than this call: a store kept (until the next
        batch, on an idle topic) keeps its database open after Faust revoked
        the partition, and Faust cannot open it again when it comes back."""
        by_partition: dict[int, list[Any]] = {}
        for event in batch:
            by_partition.setdefault(event.message.partition, []).append(event.message)
        for partition, messages in by_partition.items():
            store = PartitionStore(self.table, partition, open_it=True,
                                   send=self._send_changelog)
            outcomes = await store.update(
                lambda staged, messages=messages: [self._file_one(staged, m) for m in messages])
            for outcome in outcomes:
                self.metrics.updates.labels(outcome).inc()

    def _file_one(self, store: Store, message: Any) -> str:
        """File one record in `store`, all or nothing: a record that cannot be
        filed (bad ids, times or numbers that no key or row can hold) is
        skipped, with nothing of it written."""
        if message.value is None:
            return "skipped"
        try:
            update = update_decoder.decode(message.value)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            log.error("skipping an undecodable eventlog.updates record %s/%d@%d: %s",
                      message.topic, message.partition, message.offset, exc)
            return "skipped"
        app_id = update.app_id if hasattr(update, "app_id") else update.attempt.app_id
        try:
            if keys.partition_of(app_id, self.partitions) != message.partition:
                log.error("skipping an eventlog.updates record of app %r in partition %d, not "
                          "its app's (written with another partitioner?)", app_id,
                          message.partition)
                return "misplaced"
            staged = Overlay(store)
            outcome = fold.apply(staged, update, now_ms=int(time.time() * 1000),
                                 retention_ms=int(self.settings.retention * 1000))
            staged.apply()
            return outcome
        except (keys.BadKey, ValueError, OverflowError, TypeError) as exc:
            log.error("skipping an eventlog.updates record %s/%d@%d: %s", message.topic,
                      message.partition, message.offset, exc)
            return "skipped"

    # -- background work -------------------------------------------------------
    async def sweep(self) -> None:
        if self.busy() is not None:
            return
        now_ms = int(time.time() * 1000)
        for tp in self.app.assignor.assigned_actives():
            if tp.topic != self.changelog:
                continue
            generation = self.app.consumer_generation_id
            try:
                store = PartitionStore(
                    self.table, tp.partition, send=self._send_changelog,
                    may_write=lambda p=tp.partition: self._may_write(p, generation))
            except NotOpen:
                continue
            while True:
                # Read and written under the partition's commit lock: no other
                # commit lands between (fold.sweep rewrites W rows it read).
                deleted = await store.update(lambda staged: fold.sweep(
                    staged, now_ms=now_ms, budget=SWEEP_BUDGET,
                    retention_ms=int(self.settings.retention * 1000)))
                self.metrics.swept.inc(deleted)
                if deleted < SWEEP_BUDGET or self.busy() is not None \
                        or not self.owns(tp.partition):
                    break

    def observe(self) -> None:
        roles = {"active": 0, "standby": 0}
        for tp in self.app.assignor.assigned_actives():
            roles["active"] += tp.topic == self.changelog
        for tp in self.app.assignor.assigned_standbys():
            roles["standby"] += tp.topic == self.changelog
        for role, n in roles.items():
            self.metrics.partitions.labels(role).set(n)

    async def resume_jobs(self) -> None:
        """Start the running jobs of owned partitions that no task runs here
        (after a takeover); stop those of partitions no longer owned."""
        for (app_id, webhook_id), task in list(self.jobs.items()):
            if not self.owns(keys.partition_of(app_id, self.partitions)):
                task.cancel()
                del self.jobs[(app_id, webhook_id)]
        if self.busy() is not None:
            return
        # Job rows are read once per assignment (a takeover), not every time.
        generation = self.app.consumer_generation_id
        if generation == self._resumed_generation:
            return
        self._resumed_generation = generation
        for tp in self.app.assignor.assigned_actives():
            if tp.topic != self.changelog:
                continue
            try:
                store = PartitionStore(self.table, tp.partition, send=self._send_changelog)
            except NotOpen:
                self._resumed_generation = None  # try again at the next turn
                continue
            for _, value in list(store.scan(b"J")):
                row = replay.job_row(value)
                key = (row.app_id, row.job.webhook_id)
                if row.job.state == "running" and key not in self.jobs \
                        and key not in self._replay_requests:
                    log.info("resuming replay job %s at offset %d", row.job.id, row.next_offset,
                             extra={"webhook_id": row.job.webhook_id})
                    self._run_job(row)

    def _save_job(self, row: replay.JobRow,
                  forget: tuple[bytes, ...] = ()) -> asyncio.Future | None:
        """Write the job's row; raises NotOwner when this instance no longer
        owns its app (the next owner resumes the job from its last row)."""
        partition = keys.partition_of(row.app_id, self.partitions)
        generation = self.app.consumer_generation_id
        if not self._may_write(partition, generation):
            raise NotOwner(partition)
        try:
            store = PartitionStore(
                self.table, partition, send=self._send_changelog,
                may_write=lambda: self._may_write(partition, generation))
        except NotOpen:
            raise NotOwner(partition) from None
        key = keys.job_key(row.app_id, row.job.webhook_id, row.job.id)
        writes: dict[bytes, bytes | None] = {key: replay.encode_job_row(row)}
        writes |= {old: None for old in forget}
        if row.job.state != "running":
            writes[keys.time_key(int(time.time() * 1000 + self.settings.retention * 1000),
                                 key)] = b""
        return asyncio.ensure_future(store.commit(writes))

    def _run_job(self, row: replay.JobRow) -> None:
        assert self.producer is not None
        replayed_before = row.job.replayed

        async def job() -> None:
            try:
                await replay.run(row, kafka=self.settings.kafka, dlq_topic=self.topics.deliveries_dlq,
                                 deliveries_topic=self.topics.deliveries, producer=self.producer,
                                 rate=self.settings.replay_rate, save=self._save_job)
            except (asyncio.CancelledError, NotOwner, NotOpen):
                log.info("replay job %s stops here: its app moved to another instance",
                         row.job.id, extra={"webhook_id": row.job.webhook_id})
            except (KafkaError, OSError) as exc:
                log.error("replay job %s failed: %r", row.job.id, exc,
                          extra={"webhook_id": row.job.webhook_id})
                row.job.state, row.job.error = "failed", f"Kafka: {exc!r}"[:500]
                row.job.finished_at = datetime.now(UTC)
                try:
                    await (self._save_job(row) or asyncio.sleep(0))
                except Exception:  # the next owner resumes it as running
                    log.exception("could not save the failed replay job %s", row.job.id)
            finally:
                self.metrics.replayed.inc(row.job.replayed - replayed_before)
                if self.jobs.get(key) is task:
                    del self.jobs[key]

        key = (row.app_id, row.job.webhook_id)
        task = asyncio.ensure_future(job())
        self.jobs[key] = task


class NotOwner(Exception):
    """This instance does not own the partition (any more)."""


def _exit_unfinished(message: Any, exc: BaseException) -> NoReturn:
    where = "" if message is None else \
        f" at {message.topic}/{message.partition}@{message.offset}"
    log.critical("stopping the event log: a record could not be finished%s: %r; its offset is "
                 "not committed, it is read again after the restart", where, exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_UNFINISHED)


# -- HTTP --------------------------------------------------------------------------
@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = request.headers.get("X-Request-Id", "")[:128] or new_id("req")
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(ApiError(exc.status, exc.reason or "error"))
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        response = error_response(ApiError(500, f"internal error (request id {request_id})"))
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[APP_KEY].metrics.request_duration.labels(
        route, request.method, str(response.status)).observe(time.perf_counter() - started)
    return response


def create_http_app(log_service: EventLog) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[_errors])
    app[APP_KEY] = log_service
    base = "/v1/apps/{app_id}"
    app.router.add_get(base + "/events", list_events)
    app.router.add_get(base + "/events/{event_id}", get_event)
    app.router.add_post(base + "/events/{event_id}/resend", resend)
    app.router.add_get(base + "/webhooks/{webhook_id}/attempts", list_attempts)
    app.router.add_get(base + "/webhooks/{webhook_id}/stats", webhook_stats)
    app.router.add_post(base + "/webhooks/{webhook_id}/replay", start_replay)
    app.router.add_get(base + "/webhooks/{webhook_id}/replay/{job_id}", get_replay)
    app.router.add_get("/internal/owners", owners)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def _authorized(request: web.Request) -> tuple[EventLog, str]:
    service = request.app[APP_KEY]
    settings = service.settings
    app_id = request.match_info["app_id"]
    claims = authorize(request.headers.get("Authorization"), settings.jwt_secret, app_id,
                       max_lifetime=settings.jwt_max_lifetime, issuer=settings.jwt_issuer,
                       audience=settings.jwt_audience)
    refuse_read_only_write(claims, request.method)
    return service, app_id


def _limit(request: web.Request, default: int, most: int,
           problems: list[ErrorDetail]) -> int:
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= most):
        problems.append(ErrorDetail("limit", f"must be an integer from 1 to {most}"))
        return default
    return int(raw)


def _time_param(request: web.Request, name: str, problems: list[ErrorDetail]) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment = _utc(msgspec.json.decode(msgspec.json.encode(raw), type=datetime))
        keys.inverted(fold.ms_of(moment))
        return moment
    except (msgspec.ValidationError, keys.BadKey, OverflowError, ValueError):
        problems.append(ErrorDetail(name, "must be an RFC 3339 date-time, e.g. "
                                          "2026-11-23T12:00:00Z"))
        return None


def _utc(moment: datetime) -> datetime:
    """A time without an offset is read as UTC (as the router reads events')."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ids_ok(*values: str) -> None:
    for value in values:
        try:
            keys.part(value, "id")
        except keys.BadKey:
            raise ApiError(404, "not found") from None


async def list_events(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    problems: list[ErrorDetail] = []
    limit = _limit(request, 50, MAX_EVENTS_PAGE, problems)
    since = _time_param(request, "since", problems)
    until = _time_param(request, "until", problems)
    if since and until and since > until:
        problems.append(ErrorDetail("until", "must not be before since"))
    status = request.query.get("status")
    statuses = ("pending", "delivered", "retrying", "dead", "dropped", "failed")
    if status is not None and status not in statuses:
        problems.append(ErrorDetail("status", "must be one of " + ", ".join(statuses)))
    event_type = request.query.get("type")
    if event_type is not None and not 0 < len(event_type) <= 128:
        problems.append(ErrorDetail("type", "must be 1 to 128 characters"))
    cursor = _cursor(request, problems)
    if problems:
        raise ApiError.invalid(problems)
    _ids_ok(app_id)
    store = service.store_for(app_id)
    return _page(lambda: queries.list_events(store, app_id, queries.EventFilter(
        type=event_type, status=status, since=since, until=until), limit=limit, cursor=cursor))


def _cursor(request: web.Request, problems: list[ErrorDetail]) -> str | None:
    cursor = request.query.get("cursor")
    if cursor is not None and not 0 < len(cursor) <= 1024:
        problems.append(ErrorDetail("cursor", "not a cursor this API gave"))
    return cursor


def _page(query: Any) -> web.Response:
    """A page of a list; a cursor the list did not give is a 400."""
    try:
        return json_response(query())
    except keys.BadKey:
        raise ApiError.invalid([ErrorDetail("cursor", "not a cursor this API gave")]) from None


async def get_event(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    event_id = request.match_info["event_id"]
    _ids_ok(app_id, event_id)
    # No store held across the awaits below (Faust reopens a revoked DB only
    # once every handle of it is gone).
    found = queries.event(service.store_for(app_id), app_id, event_id)
    if found is None:
        raise ApiError(404, f"no event {event_id} in app {app_id} (or past the event log's "
                            "retention)")
    try:
        envelope = await service.envelopes.envelope(app_id, event_id, found.row)
    except Unavailable as exc:
        raise ApiError(409, f"event {event_id}: its payload cannot be read: {exc}") from None
    from schemas.eventlog_api import EventDetail
    return json_response(EventDetail(event=msgspec.Raw(envelope), deliveries=found.deliveries))


async def resend(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    event_id = request.match_info["event_id"]
    body = await decode_body(request, ResendRequest) if await request.read() else ResendRequest()
    _ids_ok(app_id, event_id)
    # No store held across the awaits below (Faust reopens a revoked DB only
    # once every handle of it is gone).
    found = queries.event(service.store_for(app_id), app_id, event_id)
    if found is None:
        raise ApiError(404, f"no event {event_id} in app {app_id} (or past the event log's "
                            "retention)")
    webhooks = [d.webhook_id for d in found.deliveries]
    if body.webhook_id is not None:
        if body.webhook_id not in webhooks:
            raise ApiError(404, f"event {event_id} was not matched to webhook {body.webhook_id}")
        webhooks = [body.webhook_id]
    if not webhooks:
        raise ApiError(409, f"event {event_id} matched no webhook: there is nothing to resend")
    try:
        envelope = await service.envelopes.envelope(app_id, event_id, found.row)
    except Unavailable as exc:
        raise ApiError(409, f"event {event_id} cannot be resent: {exc}") from None
    origin = f"resend:{new_id('rs')}"
    producer = service.producer
    if producer is None:
        raise ApiError(503, "the event log is starting; retry in a few seconds")
    encode = msgspec.json.Encoder().encode
    try:
        sent = [await producer.send(service.topics.deliveries, encode(DeliveryTask(
            webhook_id=webhook_id, app_id=app_id, event_id=event_id, event_type=found.row.type,
            event_created_at=found.row.created_at, body=msgspec.Raw(envelope), origin=origin)),
            key=webhook_id.encode()) for webhook_id in webhooks]
        await asyncio.gather(*sent)
    except KafkaError as exc:
        raise ApiError(503, f"Kafka did not take the resend ({exc!r}); retry") from None
    service.metrics.resent.inc(len(webhooks))
    log.info("event resent", extra={"event_id": event_id, "webhooks": len(webhooks)})
    return json_response(Resent(event_id=event_id, webhook_ids=webhooks), status=202)


async def list_attempts(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    webhook_id = request.match_info["webhook_id"]
    problems: list[ErrorDetail] = []
    limit = _limit(request, 20, MAX_ATTEMPTS_PAGE, problems)
    cursor = _cursor(request, problems)
    if problems:
        raise ApiError.invalid(problems)
    _ids_ok(app_id, webhook_id)
    store = service.store_for(app_id)
    return _page(lambda: queries.attempts_page(store, app_id, webhook_id, limit=limit,
                                               cursor=cursor))


async def webhook_stats(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    webhook_id = request.match_info["webhook_id"]
    _ids_ok(app_id, webhook_id)
    store = service.store_for(app_id)
    return json_response(queries.stats(store, app_id, webhook_id,
                                       now_ms=int(time.time() * 1000)))


async def start_replay(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    webhook_id = request.match_info["webhook_id"]
    body = await decode_body(request, ReplayRequest) if await request.read() else ReplayRequest()
    since = _utc(body.since) if body.since else None
    until = _utc(body.until) if body.until else None
    if since and until and since > until:
        raise ApiError.invalid([ErrorDetail("until", "must not be before since")])
    _ids_ok(app_id, webhook_id)
    store = service.store_for(app_id)
    key = (app_id, webhook_id)
    finished = []
    for job_key, value in store.scan(keys.jobs_prefix(app_id, webhook_id)):
        row = replay.job_row(value)
        if row.job.state == "running":
            raise ApiError(409, f"replay job {row.job.id} of webhook {webhook_id} is running; "
                                "one replay per webhook at a time")
        finished.append((row.job.created_at, job_key))
    del store  # not held across the awaits below
    # The last KEPT_JOBS jobs of a webhook are kept (until the retention).
    forget = tuple(job_key for _, job_key in sorted(finished)[:max(0, len(finished) -
                                                                      KEPT_JOBS + 1)])
    if key in service._replay_requests or key in service.jobs:
        raise ApiError(409, f"a replay of webhook {webhook_id} is starting or running")
    if len(service.jobs) + len(service._replay_requests) >= service.settings.max_replays:
        raise ApiError(409, f"{service.settings.max_replays} replays are running on this "
                            "instance (HOOKBUS_MAX_REPLAYS); retry when one ends")
    service._replay_requests.add(key)
    try:
        count = len(await service.producer.partitions_for(service.topics.deliveries_dlq)) \
            if service.producer else 0
        if not count:
            raise ApiError(503, "the event log is starting; retry in a few seconds")
        tp = TopicPartition(service.topics.deliveries_dlq, keys.partition_of(webhook_id, count))
        try:
            start, end = await replay.window(service.settings.kafka, tp, since)
        except KafkaError as exc:
            raise ApiError(503, f"the dead letters cannot be read now ({exc!r}); retry") from None
        job = ReplayJob(id=new_id("rj"), webhook_id=webhook_id, state="running",
                        since=since, until=until, created_at=datetime.now(UTC),
                        total=max(0, end - start))
        row = replay.JobRow(job=job, app_id=app_id, dlq_partition=tp.partition,
                            next_offset=start, end_offset=end)
        try:
            pending = service._save_job(row, forget)
            if pending is not None:
                await pending
        except (NotOwner, NotOpen):
            raise ApiError(503, "the event log is moving partitions; retry in a few "
                                "seconds") from None
        except (KafkaError, TimeoutError) as exc:
            raise ApiError(503, f"the job could not be saved ({exc!r}); retry") from None
        service._run_job(row)
    finally:
        service._replay_requests.discard(key)
    log.info("replay job started", extra={"webhook_id": webhook_id, "job_id": job.id})
    return json_response(job, status=202)


async def get_replay(request: web.Request) -> web.Response:
    service, app_id = _authorized(request)
    webhook_id, job_id = request.match_info["webhook_id"], request.match_info["job_id"]
    _ids_ok(app_id, webhook_id, job_id)
    store = service.store_for(app_id)
    value = store.get(keys.job_key(app_id, webhook_id, job_id))
    if value is None:
        raise ApiError(404, f"no replay job {job_id} of webhook {webhook_id}")
    return json_response(replay.job_row(value).job)


async def owners(request: web.Request) -> web.Response:
    service = request.app[APP_KEY]
    return web.json_response({"partitions": service.partitions, "owners": service.owners()})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    reason = request.app[APP_KEY].readiness()
    if reason is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[APP_KEY].metrics.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


class EventLogSupport(Service):
    """Starts the HTTP server, the envelope reader and the producer with the
    Faust worker; runs the sweep and the jobs' resumption."""

    def __init__(self, service: EventLog, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.service = service
        self._runner: web.AppRunner | None = None
        # mode stops this service before the Faust app, whose stop then waits
        # for the agents' events: their commits need the producer till then.
        service.app.on_before_shutdown.connect(self._stop_producer)

    async def on_start(self) -> None:
        service = self.service
        service.producer = AIOKafkaProducer(**client_options(service.settings.kafka),
                                            acks="all", enable_idempotence=True,
                                            linger_ms=BACKGROUND_LINGER_MS)
        await service.producer.start()
        service.producer_ready.set()
        await service.envelopes.start()
        self._runner = web.AppRunner(create_http_app(service), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, service.settings.http_host,
                          service.settings.http_port).start()
        log.info("event log serving on %s (advertised as %s), %d partitions",
                 service.settings.http_port, service.settings.url, service.partitions)

    async def on_stop(self) -> None:
        for task in self.service.jobs.values():
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.service.envelopes.stop()

    async def _stop_producer(self, sender: object = None, **_: object) -> None:
        """After the app's consumer stopped (its agents' events finished)."""
        if self.service.producer is not None:
            await self.service.producer.stop()

    @Service.timer(SWEEP_SECONDS)
    async def _sweep(self) -> None:
        if self.should_stop:
            return
        try:
            await self.service.sweep()
        except Exception as exc:  # a sweep's failure is the next sweep's work
            log.warning("the retention sweep failed: %r; trying again in %ss", exc,
                        SWEEP_SECONDS)

    @Service.timer(5.0)
    async def _every_few_seconds(self) -> None:
        if self.should_stop:
            return
        try:
            self.service.observe()
            await self.service.resume_jobs()
        except Exception as exc:
            log.warning("resuming replay jobs failed: %r; trying again in 5s", exc)
