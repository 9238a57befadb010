"""The router: a Faust app that turns each event into one delivery task per
matching webhook, and never commits the offset of an event it did not finish.

- **The event log hears of every routed event.** With its tasks goes one
  `Routed` record to `eventlog.updates` (schemas/eventlog.py), matched or
  not: where the event is in `events` and which webhooks it matched, keyed by
  its app id. It is acknowledged with the tasks, or, when a task is larger
  than a producer batch (a refusal of it would dead-letter the event, which
  then has no `Routed`), right after them. A dead-lettered event has none.
- **Acks in offset order.** The agent reads a `noack` stream and acknowledges
  an event only once its tasks and `Routed` record (or its dead letter) were
  acknowledged by Kafka
  and every event taken before it from its partition is finished too
  (in_order_acks.py: otherwise Faust commits past an event that another of the
  16 actors sharing the partition is still routing). Faust flushes its
  producer before it commits.
- **Failure handling wraps the handler** (`_route_one`, `_dead_letter`): a
  record that cannot be decoded or planned, for any reason (a null value,
  not JSON, `data` nested too deep, a RecursionError or any error planning
  it), and an event whose delivery task is too large for `deliveries`, go to
  `events.dlq` with the reason. Sizes are checked before sending against the
  `max.message.bytes` of `deliveries` and `events.dlq`, read from the broker
  at start, and the producer's request size (planning.py); a task the broker
  still refuses with MessageSizeTooLargeError dead-letters its event too, when
  it was alone in its batch (larger than the producer's batch size).
- **Anything else ends the process before the event's offset can be
  committed**: a KafkaError or timeout from a send (`HOOKBUS_ROUTER_SEND_TIMEOUT`;
  a task's or a `Routed` record's),
  a failed dead-letter write, a bug. The router logs one critical line with
  the event's topic, partition and offset and calls `os._exit(70)`. Not an
  exception, nor a graceful stop: an exception out of the actor makes Faust
  abandon its stream iterator, whose `finally` acknowledges the event
  (faust-streaming issue 527), the supervisor restarts the actor, and the
  next commit (every second, and on a graceful stop) takes the offset. A
  hard exit runs no `finally`, no commit and no other actor's work: the failed
  event is never acknowledged (in-order acks keep everything after it on its
  partition unacknowledged as well), so the partition's committed offset stays
  at or before it, and whoever owns the partition next routes it again
  (Kubernetes restarts the pod; a second router takes over after the session
  timeout). The cost is duplicates: events this router finished since its last
  commit (about a second of work on each of its partitions, plus those in
  flight) are routed again, and their endpoints receive them twice, with the
  same `webhook-id`.
- **read_committed**: records of aborted Kafka transactions (ingest's batches)
  are never routed (read_committed.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import NoReturn

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from mode import Service
from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.webhooks import Webhook
from services.common.kafka_clients import faust_options
from services.common.ops_server import create_ops_app, start_ops_server
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from services.router.in_order_acks import InOrderAcks
from services.router.matching import SubscriptionIndex
from services.router.planning import (
    RECORD_OVERHEAD_BYTES,
    Limits,
    Routed,
    Unroutable,
    after_refusal_as_too_large,
    dead_letter_record,
    plan,
    refusal_may_dead_letter,
    task_key,
)
from services.router.read_committed import ISOLATION_LEVEL, ReadCommittedApp, isolation_level
from services.router.settings import Settings
from services.router.topic_limits import max_message_bytes

log = logging.getLogger(__name__)
ROUTE_CONCURRENCY = 16
# The exit status after an unknown failure (EX_SOFTWARE, as ingest's).
EXIT_UNFINISHED_EVENT = 70
LIMITS_RETRY_SECONDS = 2.0


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "hookbus_router_events_total", "Events read by the router, by outcome.",
            ["outcome"], registry=self.registry,
        )
        self.deliveries = Counter(
            "hookbus_router_deliveries_total", "Delivery tasks written.", registry=self.registry,
        )
        self.webhooks = Gauge(
            "hookbus_webhooks_loaded", "Enabled webhooks in the router's index.",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "hookbus_consumer_lag", "Events not yet routed, per partition.",
            ["topic", "partition"], registry=self.registry,
        )


class Router:
    """The Faust app and what it needs beside it: the webhooks view and index,
    the topics' size limits, metrics, and the health server (run as a Faust
    worker service)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = RouterMetrics()
        self.index = SubscriptionIndex()
        self.view = WebhooksView(settings.kafka, self.topics.webhooks, self._reindex, keep=False)
        self.app = ReadCommittedApp(
            f"{settings.kafka.topic_prefix}router",
            **faust_options(settings.kafka),  # broker, and credentials unless PLAINTEXT
            processing_guarantee="at_least_once",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            topic_allow_declare=False,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            # A dead router's partitions move to the others after 10s, not 60s.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            # How long a send may wait for its acknowledgement, retries included.
            producer_request_timeout=settings.send_timeout,
            datadir=settings.data_dir,
        )
        events = self.app.topic(self.topics.events)
        self._deliveries = self.app.topic(self.topics.deliveries)
        self._dead_letters = self.app.topic(self.topics.events_dlq)
        self._updates = self.app.topic(self.topics.eventlog_updates)
        # Several actors share each partition, so that one event's writes are
        # acknowledged while the next is routed; acks go in offset order.
        self.app.agent(events, name="route", concurrency=ROUTE_CONCURRENCY)(self._route)
        self.limits: Limits | None = None
        self._limits_loaded = asyncio.Event()
        self._limits_problem = "not read yet"
        self._acks: InOrderAcks[faust.types.EventT] = InOrderAcks()
        self._assigned = False
        self._routed: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.app.on_partitions_assigned.connect(self._on_assigned)

    async def _on_assigned(self, sender: object, assigned: object, **_: object) -> None:
        level = isolation_level(self.app)
        if level != ISOLATION_LEVEL:
            _exit_now(f"the consumer reads with isolation level {level!r}, not "
                      f"{ISOLATION_LEVEL!r}: aborted transactions would be routed")
        if not self._assigned:
            log.info("reading %s with isolation level %s", self.topics.events, level)
        generation = self.app.consumer_generation_id
        # Events of an earlier assignment are never acknowledged: the
        # partition's owner reads them again from its committed offset.
        self._acks.forget(lambda partition: partition[2] == generation)  # type: ignore[index]
        self._assigned = True

    def _reindex(self, webhook_id: str, webhook: Webhook | None) -> None:
        if webhook is None or not webhook.enabled:
            self.index.remove(webhook_id)
        else:
            self.index.put(webhook_id, webhook.app_id, webhook.triggers)
        self.metrics.webhooks.set(len(self.index))

    def readiness(self) -> str | None:
        if not self.view.ready.is_set():
            return "loading webhooks"
        if not self._limits_loaded.is_set():
            return f"reading the topics' max.message.bytes: {self._limits_problem}"
        if not self._assigned:
            return "waiting for the first partition assignment"
        if self.app.rebalancing:
            return "rebalancing"
        return None

    async def load_limits(self) -> None:
        """Read the size limits of `deliveries` and `events.dlq`, retrying
        until both topics can be described; routing waits for them."""
        names = [self.topics.deliveries, self.topics.events_dlq]
        while True:
            try:
                found = await max_message_bytes(self.settings.kafka, names)
                break
            except (KafkaError, OSError) as exc:
                self._limits_problem = repr(exc)
                log.warning("cannot read max.message.bytes of %s yet (%r); retrying in %ss",
                            ", ".join(names), exc, LIMITS_RETRY_SECONDS)
                await asyncio.sleep(LIMITS_RETRY_SECONDS)
        conf = self.app.conf
        self.limits = Limits.of_topics(
            deliveries_max_message_bytes=found[self.topics.deliveries],
            dead_letters_max_message_bytes=found[self.topics.events_dlq],
            max_request_size=conf.producer_max_request_size,
        )
        for name, limit in found.items():
            if limit < conf.producer_max_batch_size + RECORD_OVERHEAD_BYTES:
                log.warning("%s takes records of at most %d bytes, less than the producer's "
                            "batches (%d): a batch the broker refuses stops the router",
                            name, limit, conf.producer_max_batch_size)
        log.info("routing delivery tasks of up to %d bytes, dead letters of up to %d bytes",
                 self.limits.deliveries, self.limits.dead_letters)
        self._limits_loaded.set()

    async def _route(self, stream: faust.StreamT) -> None:
        await self.view.ready.wait()
        await self._limits_loaded.wait()
        manual = stream.noack()
        message: faust.types.Message | None = None
        try:
            async for event in manual.events():
                message = event.message
                partition = (message.topic, message.partition, message.generation_id)
                self._acks.taken(partition, message.offset, event)
                await self._route_one(message)
                self._mark_routed(message)
                for done in self._acks.finished(partition, message.offset):
                    if done.message.generation_id == self.app.consumer_generation_id:
                        await manual.ack(done)
                message = None
        except Exception as exc:  # unknown: end the process before any commit
            _exit_unfinished(message, exc)

    async def _route_one(self, message: faust.types.Message) -> None:
        """Write the event's delivery tasks and its `Routed` record, or its dead
        letter; returns once Kafka acknowledged them. Raises on any failure but
        a task refused as too large when that dead-letters the event."""
        assert self.limits is not None
        outcome = plan(
            message.value, partition=message.partition, offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000), index=self.index, limits=self.limits,
        )
        if isinstance(outcome, Unroutable):
            await self._dead_letter(message, outcome.reason)
            return
        # A refusal of a task larger than a producer batch dead-letters the
        # event, which must then have no Routed record: it waits for the tasks.
        routed_after = refusal_may_dead_letter(
            outcome.tasks, producer_batch_size=self.app.conf.producer_max_batch_size)
        try:
            sent = [await self._deliveries.send(key=task_key(webhook_id), value=task)
                    for webhook_id, task in outcome.tasks]
            if not routed_after:
                sent.append(await self._send_routed(outcome))
            await _all_acknowledged(sent)
        except Exception as exc:
            refused = after_refusal_as_too_large(
                outcome.tasks, producer_batch_size=self.app.conf.producer_max_batch_size,
            ) if _refused_as_too_large(exc) else None
            if refused is None:
                raise
            await self._dead_letter(message, refused.reason)
            return
        if routed_after:
            await _all_acknowledged([await self._send_routed(outcome)])
        self.metrics.deliveries.inc(len(outcome.tasks))
        self.metrics.events.labels("routed" if outcome.tasks else "unmatched").inc()

    async def _send_routed(self, outcome: Routed) -> asyncio.Future:
        return await self._updates.send(key=outcome.update_key, value=outcome.update)

    async def _dead_letter(self, message: faust.types.Message, reason: str) -> None:
        assert self.limits is not None
        log.warning("event record %s/%d@%d to the dead letters: %s",
                    message.topic, message.partition, message.offset, reason)
        key, letter = dead_letter_record(
            reason=reason, topic=message.topic, partition=message.partition,
            offset=message.offset, key=message.key, value=message.value,
            failed_at=datetime.now(UTC), limit=self.limits.dead_letters,
        )
        await (await self._dead_letters.send(key=key, value=letter))
        self.metrics.events.labels("dead_lettered").inc()

    def _mark_routed(self, message: faust.types.Message) -> None:
        key = (message.topic, message.partition)
        self._routed[key] = max(self._routed.get(key, 0), message.offset + 1)

    def observe_lag(self) -> None:
        for tp in self.app.consumer.assignment():
            end = self.app.consumer.highwater(tp)
            done = self._routed.get((tp.topic, tp.partition))
            if end is not None and done is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, end - done))


async def _all_acknowledged(sent: list[asyncio.Future]) -> None:
    """Wait for every send; raise the first failure once all are settled."""
    results = await asyncio.gather(*sent, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _refused_as_too_large(exc: BaseException | None) -> bool:
    """MessageSizeTooLargeError, from the broker (as is) or from the producer
    (which Faust wraps in ProducerSendError)."""
    while exc is not None:
        if isinstance(exc, MessageSizeTooLargeError):
            return True
        exc = exc.__cause__
    return False


def _exit_unfinished(message: faust.types.Message | None, exc: BaseException) -> NoReturn:
    if message is None:
        _exit_now(f"the route agent failed: {exc!r}", exc)
    _exit_now(
        f"event record {message.topic}/{message.partition}@{message.offset} could not be "
        f"finished: {exc!r}; its offset is not committed, it is routed again after the restart",
        exc)


def _exit_now(reason: str, exc: BaseException | None = None) -> NoReturn:
    """Log `reason` and end the process at once: no `finally`, no commit."""
    log.critical("stopping the router: %s", reason, exc_info=exc)
    logging.shutdown()  # flush the handlers
    os._exit(EXIT_UNFINISHED_EVENT)


class RouterSupport(Service):
    """Starts the webhooks view and the health server with the Faust worker."""

    def __init__(self, router: Router, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.router = router
        self._runner = None

    async def on_start(self) -> None:
        router = self.router
        task = await router.view.start()
        task.add_done_callback(self._crash_if_failed)
        self.add_future(router.load_limits()).add_done_callback(self._crash_if_failed)
        ops = create_ops_app(router.metrics.registry, router.readiness)
        self._runner = await start_ops_server(
            ops, router.settings.metrics_host, router.settings.metrics_port
        )

    async def on_stop(self) -> None:
        await self.router.view.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    @Service.timer(5.0)
    async def _observe_lag(self) -> None:
        self.router.observe_lag()

    def _crash_if_failed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            asyncio.ensure_future(self.crash(task.exception()))
