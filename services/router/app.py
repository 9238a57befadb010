"""The router: a Faust app that turns each event into one delivery task per
matching webhook, and never commits the offset of an event it did not finish.

- **Batches.** The agent runs ROUTE_CONCURRENCY actors on one `noack` stream
  of `events`. Each actor's reader task moves events from the stream to an
  inbox (at most MAX_HELD) as they come; the actor waits only while it holds
  none, then routes a batch (`_route_batch`): it plans each event
  (planning.py, pure), hands all their records to Faust's producer without
  awaiting any (`app.producer.send`, which returns aiokafka's future of the
  record's acknowledgement, so the records go in as few requests as the
  producer makes), waits until every one is acknowledged or failed, and only
  then acknowledges the events. An actor never waits on the stream while it
  holds an event it has not routed: Faust waits for those at a rebalance. Two
  actors, so that one routes while the other waits for Kafka.
- **Fair to other apps.** A batch is planned and sent in one turn of the
  event loop, and one app's flood must not pace another app's events through
  it (`python -m bench.hops --flood 200`: a quiet app's router hop p99 was
  0.3 s beside 1,600 tasks, 4 ms alone). So an actor takes events one per app
  in turn (fair_inbox.py; the record key is the app id), stops a batch at
  BATCH_RECORDS records or MAX_BATCH_BYTES of events, and before each batch
  lets Faust's consumer hand on all it fetched (`_read_first`; Faust hands on
  one record per turn, so routing as they came paced the reading of every
  partition by the flood's fan-out).
- **The event log hears of every routed event.** With its tasks goes one
  `Routed` record to `eventlog.updates` (schemas/eventlog.py), matched or
  not: where the event is in `events` and which webhooks it matched, keyed by
  its app id. It is sent with the tasks, or, when a task is larger than a
  producer batch (a refusal of it would dead-letter the event, which then has
  no `Routed`), in a second round once the tasks are acknowledged. A
  dead-lettered event has none.
- **Acks in offset order.** An event is acknowledged only once its tasks and
  `Routed` record (or its dead letter) were acknowledged by Kafka and every
  event read before it from its partition is finished too (in_order_acks.py:
  otherwise Faust commits past an event that the other actor, or a later batch,
  is still routing). Events of an earlier assignment are never acknowledged,
  and those read before a rebalance and not yet routed are dropped unrouted:
  the partition's owner reads them again from its committed offset (see
  `_on_assigned`). Faust flushes its producer before it commits.
- **Failure handling wraps the handler** (`_route_batch`, `_dead_letter`): a
  record that cannot be decoded or planned, for any reason (a null value,
  not JSON, `data` nested too deep, a RecursionError or any error planning
  it), and an event whose delivery task is too large for `deliveries`, go to
  `events.dlq` with the reason; its batch-mates are routed as if it were not
  there. Sizes are checked before sending against the `max.message.bytes` of
  `deliveries` and `events.dlq`, read from the broker at start, and the
  producer's request size (planning.py); a task the broker still refuses with
  MessageSizeTooLargeError dead-letters its event too (in the second round),
  when it was alone in its producer batch (larger than the producer's batch
  size).
- **Anything else ends the process before the event's offset can be
  committed**: a KafkaError or timeout from any send of a batch
  (`HOOKBUS_ROUTER_SEND_TIMEOUT`; a task's, a `Routed` record's or a dead
  letter's), a bug. Once every send of the batch has settled, the router logs
  one critical line with the topic, partition and offset of the first event
  that failed and calls `os._exit(70)`, acknowledging nothing of the batch.
  Not an exception, nor a graceful stop: an exception out of the actor makes
  Faust abandon its stream iterator, whose `finally` acknowledges the event
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
  are never routed (read_committed.py, which also keeps a partition from
  waiting behind a long-polling fetch of the others).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from dataclasses import dataclass, field
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
from services.router.fair_inbox import FairInbox
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
from services.router.read_committed import (
    ISOLATION_LEVEL,
    ReadCommittedApp,
    isolation_level,
    prefetch_backoff,
    records_handed_on,
)
from services.router.settings import Settings
from services.router.topic_limits import max_message_bytes

log = logging.getLogger(__name__)
ROUTE_CONCURRENCY = 2
# The most events an actor holds read and not yet routed.
MAX_HELD = 500
# A batch takes events until their records (tasks, Routed records, dead
# letters) reach BATCH_RECORDS: enough to share requests, few enough that
# another app's event waits for little (an event's fan-out is never split)...
BATCH_RECORDS = 32
# ... and at most MAX_BATCH_BYTES of events (but one event, whatever its
# size): a batch is planned whole before any of it is sent, a task per
# matching webhook, so that 500 events of 1 MB to ten webhooks are not 5 GB
# held at once.
MAX_BATCH_BYTES = 4 * 1024 * 1024
# The most an actor waits for the consumer to hand on its last fetch.
READ_FIRST_SECONDS = 0.1
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
        self._deliveries_topic = self.topics.deliveries
        self._dead_letters_topic = self.topics.events_dlq
        self._updates_topic = self.topics.eventlog_updates
        # Two actors share the stream, so that one batch's writes are
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
            log.info("reading %s with isolation level %s and a prefetch backoff of %s s",
                     self.topics.events, level, prefetch_backoff(self.app))
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
        inbox: FairInbox[faust.types.EventT] = FairInbox(MAX_HELD)
        reader = asyncio.ensure_future(self._read(manual, inbox))
        batch: list[_Taken] = []
        try:
            while True:
                # Waits only while it holds nothing; then lets the consumer hand
                # on what it fetched, and routes what was read: one event per
                # app in turn, up to BATCH_RECORDS records or MAX_BATCH_BYTES.
                first = await inbox.get()
                # While the consumer's flow is stopped (a rebalance, a SIGTERM)
                # nothing more comes in and Faust waits for all the actors hold:
                # nothing to be fair to, so neither a wait for the consumer nor
                # a record limit (a SIGTERM or a rebalance with full inboxes of
                # events to ten webhooks took 18-20 s of a busy loop with both,
                # 1.5-5 s without: tests/integration/test_attack_router_fair.py).
                reading = self.app.consumer.flow_active
                if reading:
                    await self._read_first(inbox)
                batch = self._take_batch(first, inbox,
                                         record_limit=BATCH_RECORDS if reading else math.inf)
                if not batch:
                    continue
                await self._route_batch(batch)
                for done in self._finished([taken.event for taken in batch]):
                    await manual.ack(done)
                batch = []
        except Exception as exc:  # unknown: end the process before any commit
            _exit_unfinished(batch[0].message if batch else None, exc)
        finally:
            reader.cancel()

    async def _read(self, stream: faust.StreamT, inbox: FairInbox) -> None:
        """Move the stream's events to `inbox` as they come (at most MAX_HELD
        wait there), so that the router never waits on the stream while it
        holds an event it has not routed (Faust waits for those at a rebalance)."""
        try:
            async for event in stream.events():
                message = event.message
                self._acks.taken((message.topic, message.partition, message.generation_id),
                                 message.offset, event)
                await inbox.put(message.key, event)
        except Exception as exc:  # unknown: end the process before any commit
            _exit_unfinished(None, exc)

    async def _read_first(self, inbox: FairInbox) -> None:
        """Wait, at most READ_FIRST_SECONDS, while `inbox` has room and the
        consumer's flow runs, until Faust's consumer has handed on every record
        of its last fetch.

        Faust hands records on one per turn of the event loop, and a batch's
        planning and sends take a whole turn: routed as they came, a flood's
        fan-out paced the reading of everything fetched after it, another
        app's events on other partitions included."""
        handed_on = records_handed_on(self.app)
        if handed_on is None:
            return
        consumer = self.app.consumer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_FIRST_SECONDS
        while (not handed_on.is_set() and consumer.flow_active and not inbox.full()
               and loop.time() < deadline):
            await asyncio.sleep(0)  # a turn: Faust hands on one more record

    def _take_batch(self, first: faust.types.EventT, inbox: FairInbox, *,
                    record_limit: float) -> list[_Taken]:
        """`first` and the events after it in the inbox's turn, planned, until
        their records reach `record_limit`, the next would pass MAX_BATCH_BYTES
        of events (a batch is planned whole before it is sent, a task per
        matching webhook), or the inbox is empty. Events read before a
        rebalance are dropped: never acknowledged, their partition's owner
        reads them again."""
        assert self.limits is not None
        generation = self.app.consumer_generation_id
        batch: list[_Taken] = []
        records = size = 0
        event = first
        while True:
            message = event.message
            size += len(message.value or b"")
            if message.generation_id == generation:
                taken = _Taken(event, plan(
                    message.value, partition=message.partition, offset=message.offset,
                    timestamp_ms=int(message.timestamp * 1000), index=self.index,
                    limits=self.limits))
                batch.append(taken)
                records += taken.records
            if records >= record_limit or inbox.empty():
                return batch
            if size + len(inbox.peek().message.value or b"") > MAX_BATCH_BYTES:
                return batch
            event = inbox.get_nowait()

    async def _route_batch(self, batch: list[_Taken]) -> None:
        """Write every event's delivery tasks and `Routed` record, or its dead
        letter; returns once Kafka acknowledged them all. Ends the process on
        any failure but a task refused as too large when that dead-letters its
        event (then that event only)."""
        batch_size = self.app.conf.producer_max_batch_size
        # All records are handed to the producer before any is awaited, so
        # that they travel in as few requests as the producer can make.
        for taken in batch:
            outcome = taken.outcome
            if isinstance(outcome, Unroutable):
                taken.sent.append(await self._dead_letter(taken.message, outcome.reason))
                continue
            for webhook_id, task in outcome.tasks:
                taken.sent.append(await self._send(self._deliveries_topic,
                                                   task_key(webhook_id), task))
            # A refusal of a task larger than a producer batch dead-letters the
            # event, which must then have no Routed record: it waits for the tasks.
            taken.routed_after = refusal_may_dead_letter(outcome.tasks,
                                                         producer_batch_size=batch_size)
            if not taken.routed_after:
                taken.sent.append(await self._send_routed(outcome))
        await _settled([future for taken in batch for future in taken.sent])

        second: list[_Taken] = []
        for taken in batch:
            failure = _failure(taken.sent)
            if failure is None:
                if taken.routed_after:
                    assert isinstance(taken.outcome, Routed)
                    taken.sent = [await self._send_routed(taken.outcome)]
                    second.append(taken)
                continue
            refused = after_refusal_as_too_large(
                taken.outcome.tasks, producer_batch_size=batch_size,
            ) if isinstance(taken.outcome, Routed) and _refused_as_too_large(failure) else None
            if refused is None:
                _exit_unfinished(taken.message, failure)
            taken.outcome = refused
            taken.sent = [await self._dead_letter(taken.message, refused.reason)]
            second.append(taken)
        if second:
            await _settled([future for taken in second for future in taken.sent])
            for taken in second:
                failure = _failure(taken.sent)
                if failure is not None:
                    _exit_unfinished(taken.message, failure)

        for taken in batch:
            outcome = taken.outcome
            if isinstance(outcome, Unroutable):
                self.metrics.events.labels("dead_lettered").inc()
            else:
                self.metrics.deliveries.inc(len(outcome.tasks))
                self.metrics.events.labels("routed" if outcome.tasks else "unmatched").inc()

    def _finished(self, batch: list[faust.types.EventT]) -> list[faust.types.EventT]:
        """The events that may be acknowledged now that `batch` is finished:
        in offset order, of the current assignment only."""
        generation = self.app.consumer_generation_id
        done: list[faust.types.EventT] = []
        for event in batch:
            message = event.message
            self._mark_routed(message)
            done += [e for e in self._acks.finished(
                (message.topic, message.partition, message.generation_id), message.offset)
                if e.message.generation_id == generation]
        return done

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future:
        """Hand one record to the producer; the future of its acknowledgement
        (failed at once when the producer refuses it)."""
        try:
            return await self.app.producer.send(topic, key, value, partition=None,
                                                timestamp=None, headers=None)
        except Exception as exc:
            failed: asyncio.Future = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _send_routed(self, outcome: Routed) -> asyncio.Future:
        return await self._send(self._updates_topic, outcome.update_key, outcome.update)

    async def _dead_letter(self, message: faust.types.Message, reason: str) -> asyncio.Future:
        assert self.limits is not None
        log.warning("event record %s/%d@%d to the dead letters: %s",
                    message.topic, message.partition, message.offset, reason)
        key, letter = dead_letter_record(
            reason=reason, topic=message.topic, partition=message.partition,
            offset=message.offset, key=message.key, value=message.value,
            failed_at=datetime.now(UTC), limit=self.limits.dead_letters,
        )
        return await self._send(self._dead_letters_topic, key, letter)

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


@dataclass(slots=True)
class _Taken:
    """An event of a batch: its plan, and the acknowledgements of what was
    sent for it."""

    event: faust.types.EventT
    outcome: Routed | Unroutable
    sent: list[asyncio.Future] = field(default_factory=list)
    routed_after: bool = False  # its Routed record waits for its tasks

    @property
    def message(self) -> faust.types.Message:
        return self.event.message

    @property
    def records(self) -> int:
        """What it writes: its tasks and Routed record, or its dead letter."""
        outcome = self.outcome
        return 1 if isinstance(outcome, Unroutable) else 1 + len(outcome.tasks)


async def _settled(sent: list[asyncio.Future]) -> None:
    """Wait until every send has succeeded or failed."""
    if sent:
        await asyncio.wait(sent)


def _failure(sent: list[asyncio.Future]) -> BaseException | None:
    """The first failure among settled sends (a cancellation is raised: the
    router is stopping)."""
    for future in sent:
        if future.cancelled():
            raise asyncio.CancelledError
        if future.exception() is not None:
            return future.exception()
    return None


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
