"""The deliverer: consumes `deliveries` and the retry tiers, attempts each task,
and writes what follows. This module is the I/O shell; what to do is decided
by pure code: `next_steps` (what stands in a task's way, and the writes after
it), `fair_queue` (who gets an attempt slot), `retry_policy`, `breaker` and
`watermarks`.

Fair shares: a task whose webhook may be tried joins its (app, endpoint) queue
in memory, holding no slot; slots go round-robin over apps, then over their
endpoints, within the caps per endpoint URL, per app and in all. A task that
finds its queue full waits (its partition is rewound to it and paused until
there is room) while that queue keeps moving, and is deferred to a retry tier
when it does not: a burst to a healthy endpoint is slowed down, a slow tenant
never holds up the others.

Commits: many records are under way at once, from any partition; an offset is
committed only up to the lowest unfinished record of its partition, queued
ones included, and only after that record's writes were acknowledged. A
rebalance lets the work of revoked partitions finish within a budget (queued
tasks may still start while an attempt begun then can end in time; the rest are
left to the new owner), and what finishes later is neither committed nor an
error.

Retry tiers: a tier partition whose head record is not yet due is paused and
rewound to that record until it is; nothing sleeps per record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp.abc import AbstractResolver
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError, KafkaError

from schemas.deliveries import DeliveryTask, delivery_task_decoder
from schemas.webhooks import Webhook
from services.common.kafka_clients import BACKGROUND_LINGER_MS, client_options
from services.common.ops_server import create_ops_app, start_ops_server
from services.common.shutdown import Shutdown
from services.common.topics import Topics
from services.common.webhooks_view import SecretsUnopened, WebhooksView, WriteNotConfirmed
from services.deliverer.attempt import Attempter, guarded_session
from services.deliverer.breaker import Breakers
from services.deliverer.fair_queue import Defer, FairQueue, Slot
from services.deliverer.metrics import DelivererMetrics
from services.deliverer.next_steps import (
    Attempted,
    BreakerOpen,
    DeadLetter,
    Disable,
    Go,
    Policy,
    QueueFull,
    RecordAttempt,
    Retry,
    Situation,
    UnknownWebhook,
    Write,
    next_steps,
    triage,
)
from services.deliverer.outcomes import Refused
from services.deliverer.settings import Settings
from services.deliverer.watermarks import Watermarks

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
COMMIT_INTERVAL = 0.5
MAX_FETCH = 500            # records per fetch, at most
# How long the broker may hold a fetch that finds nothing new: aiokafka's
# default. A fetch answers at once when records arrive; aiokafka leaves a
# partition whose records were not all taken within 0.1 s out of the next
# fetch (so its new records wait for that one), but this loop takes what was
# fetched at every turn, unless it is at its cap. 100 ms cost 10 CPU-ms/s at
# rest for that rare case (issue 13); the router, which hit it, uses 100.
FETCH_MAX_WAIT_MS = 500
UNKNOWN_HOLD = 2.0         # seconds a task of an unknown webhook waits in memory for the view
MAX_HOLDING = 1_000        # tasks held so at once; more go to a retry tier at once
REVOKE_MARGIN = 5.0        # seconds beyond the attempt timeout that a revocation waits
REBALANCE_MARGIN = 15.0    # seconds beyond the attempt timeout that a rebalance may take
DUE_SLACK = 60.0           # seconds a tier record may seem due late by (clocks)
# After the drain (the attempts' own deadline), the steps of a stop share this
# many seconds, each at most its own limit: within Kubernetes' 30 s grace with
# the default 15 s attempt timeout. A step past its deadline is abandoned.
CLOSE_BUDGET = 6.0
FINAL_COMMIT_LIMIT = 3.0   # the last commit of finished work (else: done again after restart)
LEAVE_GROUP_LIMIT = 3.0    # the consumer's close: LeaveGroup (else: the session timeout)
FLUSH_LIMIT = 2.0          # the producer's close: writes of unfinished work only
CLOSE_LIMIT = 1.0          # an HTTP session or server
VIEW_LIMIT = 2.5           # the webhooks view (its follower's own limit is 2 s)


def target_of(url: str) -> str:
    """What the per-target cap and breaker count by: the endpoint's URL without
    its query. Not the host alone: endpoints of many customers can share one
    host (a SaaS receiver), and one of them failing must not hold up the rest."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def breaker_of(app_id: str, url: str) -> str:
    """What a circuit breaker counts by: the endpoint, for one app. The
    failures of one app's requests (another tenant's webhook on a customer's
    endpoint, which refuses it) never defer another app's tasks."""
    return f"{app_id} {target_of(url)}"


@dataclass(eq=False, slots=True)
class _Entry:
    """A record under way: its place in the partition, and its task."""

    tp: TopicPartition
    offset: int
    task: DeliveryTask
    generation: int = 0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, deliverer: Deliverer) -> None:
        self._deliverer = deliverer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._deliverer.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._deliverer.assigned = True


class Deliverer:
    def __init__(self, settings: Settings, resolver: AbstractResolver | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix, settings.retry_schedule)
        self.tier_topics = {name: delay for delay, name in self.topics.retry_tiers.items()}
        self.policy = Policy(settings.retry_schedule, settings.disable_after,
                             settings.unknown_webhook_grace)
        self.metrics = DelivererMetrics()
        self.view = WebhooksView(settings.kafka, self.topics.webhooks,
                                 keys=settings.secret_keys)
        self.watermarks = Watermarks()
        self.breakers = Breakers()
        self.queue: FairQueue[_Entry] = FairQueue(settings.limits)
        self.assigned = False
        self._resolver = resolver
        self._failing_since: dict[str, float] = {}      # webhook id -> first failure of a streak
        self._paused: dict[TopicPartition, float] = {}  # tier partition -> when its head is due
        self._handles: dict[asyncio.Task[None], TopicPartition] = {}
        self._holding = 0
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._attempter: Attempter | None = None

    def readiness(self) -> str | None:
        if not self.view.ready.is_set():
            return "loading webhooks"
        if self._consumer is None or not self.assigned:
            return "waiting for a partition assignment"
        return None

    def stop(self) -> None:
        """Stop fetching; attempts under way finish (within a deadline) and are committed."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        self._producer = AIOKafkaProducer(
            **client_options(settings.kafka), acks="all", enable_idempotence=True,
            linger_ms=BACKGROUND_LINGER_MS,
        )
        # A revocation lets the attempts under way finish: the group must wait longer.
        rebalance_ms = int((settings.delivery_timeout + REBALANCE_MARGIN) * 1000)
        consumer = AIOKafkaConsumer(
            **client_options(settings.kafka),
            group_id=f"{settings.kafka.topic_prefix}deliverer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_FETCH,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            rebalance_timeout_ms=rebalance_ms,
            max_poll_interval_ms=max(300_000, rebalance_ms),
        )
        session = guarded_session(settings.target_policy, settings.ca_bundle,
                                  settings.max_in_flight, self._resolver)
        self._attempter = Attempter(session, settings.target_policy,
                                    f"hookbus/{version('hookbus')}", settings.delivery_timeout)
        ops = await start_ops_server(
            create_ops_app(self.metrics.registry, self.readiness),
            settings.metrics_host, settings.metrics_port,
        )
        view_task = await self.view.start()
        shutdown: Shutdown | None = None
        try:
            await self._producer.start()
            await self.view.ready.wait()
            await consumer.start()
            consumer.subscribe([self.topics.deliveries, *self.tier_topics],
                               listener=_Rebalance(self))
            self._consumer = consumer
            log.info("deliverer consuming %s and %d retry tiers",
                     self.topics.deliveries, len(self.tier_topics))
            await self._consume(consumer, view_task)
            shutdown = await self._drain(consumer)
        finally:
            # Every step bounded (see services/common/shutdown.py): what is
            # abandoned here was never committed.
            self._consumer = None
            shutdown = shutdown or Shutdown(CLOSE_BUDGET, log)
            await shutdown.step("leaving the consumer group", consumer.stop, LEAVE_GROUP_LIMIT)
            await shutdown.step("flushing the producer", self._producer.stop, FLUSH_LIMIT)
            await shutdown.step("closing the HTTP session", session.close, CLOSE_LIMIT)
            await shutdown.step("closing the webhooks view", self.view.stop, VIEW_LIMIT)
            await shutdown.step("closing the metrics server", ops.cleanup, CLOSE_LIMIT)
            log.info("deliverer stopped" + (
                f" (unfinished: {', '.join(shutdown.unfinished)})" if shutdown.unfinished else ""))
        if self._fatal is not None:
            raise RuntimeError("a delivery task failed unexpectedly") from self._fatal

    # -- fetching ----------------------------------------------------------------
    async def _consume(self, consumer: AIOKafkaConsumer, view_task: asyncio.Task[None]) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            if view_task.done():
                raise RuntimeError("the webhooks view stopped") from view_task.exception()
            # Queued tasks, attempts and tasks held for the view (MAX_HOLDING) have
            # their own bounds; what else is under way (writes) bounds the fetch.
            room = self.settings.max_in_flight - (
                len(self._handles) - self.queue.running - self._holding)
            if room <= 0:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), COMMIT_INTERVAL)
            else:
                batches = await consumer.getmany(timeout_ms=200,
                                                 max_records=min(room, MAX_FETCH))
                for tp, records in batches.items():
                    self._dispatch(consumer, tp, records)
            self._resume_ready(consumer)
            self.metrics.observe_state(
                self.queue.running, self.breakers.open_count(time.time()), len(self._paused),
                self.queue.queued)
            if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                # Neither may hold up a stop (a broker that does not answer):
                # the stop's final commit, with its deadline, takes over.
                await self._unless_stopping(self._commit(consumer))
                await self._unless_stopping(self._observe_lag(consumer))
                last_commit = time.monotonic()

    def _dispatch(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                  records: list[ConsumerRecord]) -> None:
        now = time.time()
        for record in records:
            task, poison = _decode(record)
            if task is None:
                generation = self.watermarks.started(tp, record.offset)
                self._spawn(_Entry(tp, record.offset, None, generation),  # type: ignore[arg-type]
                            self._dead_letter_raw(record, poison))
                continue
            # A tier record is due its tier's delay after it was written, so never
            # later than that from now: one that says otherwise (not a deliverer's,
            # or a clock's jump) is due now, or it would hold the partition for ever.
            if tp.topic in self.tier_topics and \
                    now < (task.due_at or 0) <= now + self.tier_topics[tp.topic] + DUE_SLACK:
                # Not due: hold this partition at this record until it is.
                self._rewind(consumer, tp, record.offset)
                self._paused[tp] = task.due_at or now
                return
            self._admit(_Entry(tp, record.offset, task), now)

    def _admit(self, entry: _Entry, now: float) -> None:
        """Queue the record's task, or start what follows it (a deferral when its
        queue is full: no queue ever stops the fetch for other apps)."""
        task, tp = entry.task, entry.tp
        webhook = self.view.get(task.webhook_id)
        situation = self._triage(task, webhook, now)
        if isinstance(situation, Go):
            assert webhook is not None
            target = target_of(webhook.target)
            admission = self.queue.offer(task.app_id, target, entry, now)
            entry.generation = self.watermarks.started(tp, entry.offset)
            self._shed(admission.shed, admission.shed_wait)
            if isinstance(admission.verdict, Defer):
                self._spawn(entry, self._conclude(task, QueueFull(admission.verdict.reason,
                                                                  admission.verdict.wait)))
            else:
                self._pump()
            return
        entry.generation = self.watermarks.started(tp, entry.offset)
        if isinstance(situation, UnknownWebhook) and task.unknown_since is None \
                and self._holding < MAX_HOLDING and self.policy.unknown_webhook_grace > 0:
            self._holding += 1  # counted from now: the fetch's room and MAX_HOLDING
            self._spawn(entry, self._hold_unknown(entry))
        else:
            self._spawn(entry, self._conclude(task, situation))

    def _triage(self, task: DeliveryTask, webhook: Webhook | None, now: float) -> Situation:
        breaker_wait = (self.breakers.open_for(breaker_of(task.app_id, webhook.target), now)
                        if webhook else 0.0)
        return triage(task, webhook, deleted=self.view.is_deleted(task.webhook_id),
                      breaker_wait=breaker_wait, policy=self.policy, now=now,
                      secret_problem=self.view.secret_problem(task.webhook_id))

    def _shed(self, shed: tuple[_Entry, ...], wait: float) -> None:
        """Defer the queued tasks pushed out of a full buffer."""
        for entry in shed:
            self._spawn(entry, self._conclude(
                entry.task, QueueFull("the deliverer's buffer is full", wait)))

    def _rewind(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        consumer.seek(tp, offset)
        consumer.pause(tp)

    def _resume_ready(self, consumer: AIOKafkaConsumer) -> None:
        """Resume the tier partitions whose head record is due."""
        now = time.time()
        assignment = consumer.assignment()
        for tp, due in list(self._paused.items()):
            if due <= now:
                del self._paused[tp]
                if tp in assignment:
                    consumer.resume(tp)

    # -- running -----------------------------------------------------------------
    def _spawn(self, entry: _Entry, work: Coroutine[Any, Any, bool]) -> None:
        handle = asyncio.create_task(self._finish(entry, work))
        self._handles[handle] = entry.tp

    async def _finish(self, entry: _Entry, work: Coroutine[Any, Any, bool]) -> None:
        """Run `work`; when it says the record is done, its offset may be
        committed (unless its partition was revoked meanwhile)."""
        try:
            if await work and not self.watermarks.finished(entry.tp, entry.offset,
                                                           entry.generation):
                log.info("finished %s@%d after its partition was revoked; its new owner "
                         "repeats it", entry.tp, entry.offset)
        except Exception as exc:  # an unknown failure must not leave a stuck consumer
            log.critical("delivery task at %s@%d failed; stopping", entry.tp, entry.offset,
                         exc_info=exc)
            self._fatal = exc
            self._stopping.set()
        finally:
            self._handles.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._room.set()

    def _pump(self) -> None:
        """Start every queued task that may start now."""
        now = time.time()
        while (slot := self.queue.next(now)) is not None:
            self._spawn(slot.item, self._run(slot))

    async def _run(self, slot: Slot[_Entry]) -> bool:
        """Attempt a queued task in its slot, unless something now stands in its
        way (the webhook changed, the breaker opened), then write what follows."""
        entry = slot.item
        task = entry.task
        target = slot.target
        probing = False
        try:
            now = time.time()
            webhook = self.view.get(task.webhook_id)
            situation = self._triage(task, webhook, now)
            if isinstance(situation, Go):
                assert webhook is not None and self._attempter is not None
                if target_of(webhook.target) != target:  # moved while it waited: queue again
                    return self._requeue(entry, target_of(webhook.target), now)
                breaker = breaker_of(task.app_id, webhook.target)
                if now < self.policy.deadline_of(task, now):
                    # The breaker may still hold it back, and may take it as its probe.
                    probing = self.breakers.allows(breaker, now)
                    if not probing:
                        situation = BreakerOpen(self.breakers.open_for(breaker, now))
                if isinstance(situation, Go):
                    report = await self._attempter.attempt(webhook, task)
                    self.breakers.settle(breaker, report.outcome, time.time())
                    probing = False
                    if not isinstance(report.outcome, Refused):
                        self.metrics.attempt_duration.observe(report.latency)
                    situation = Attempted(report)
        finally:
            if probing:  # the attempt never came to anything: let the next one probe
                self.breakers.release(breaker_of(task.app_id, target))
            self.queue.done(slot, time.time())
            self._pump()
        return await self._conclude(task, situation)

    def _requeue(self, entry: _Entry, target: str, now: float) -> bool:
        admission = self.queue.offer(entry.task.app_id, target, entry, now)
        self._shed(admission.shed, admission.shed_wait)
        if isinstance(admission.verdict, Defer):
            self._spawn(entry, self._conclude(entry.task, QueueFull(admission.verdict.reason,
                                                                    admission.verdict.wait)))
        else:
            self._pump()
        return False  # finished by whoever takes it now

    async def _hold_unknown(self, entry: _Entry) -> bool:
        """A task whose webhook this view does not know: most often one created
        a moment ago. Wait for the view briefly in memory, then go on as usual."""
        task = entry.task
        try:
            until = time.monotonic() + min(UNKNOWN_HOLD, self.policy.unknown_webhook_grace)
            while time.monotonic() < until and not self._stopping.is_set():
                await asyncio.sleep(0.05)
                if self.view.get(task.webhook_id) or self.view.is_deleted(task.webhook_id):
                    break
        finally:
            self._holding -= 1
        if self._stopping.is_set() or not self.watermarks.is_current(entry.tp, entry.generation):
            return False  # left uncommitted: read again by whoever owns the partition next
        now = time.time()
        webhook = self.view.get(task.webhook_id)
        situation = self._triage(task, webhook, now)
        if isinstance(situation, Go):
            assert webhook is not None
            return self._requeue(entry, target_of(webhook.target), now)
        return await self._conclude(task, situation)

    # -- writing what follows --------------------------------------------------
    async def _conclude(self, task: DeliveryTask, situation: Situation) -> bool:
        """Perform the plan for `task` after `situation`: every write acknowledged."""
        now = time.time()
        plan = next_steps(task, situation, failing_since=self._failing_since.get(task.webhook_id),
                          policy=self.policy, now=now)
        if plan.failing_since is None:
            self._failing_since.pop(task.webhook_id, None)
        else:
            self._failing_since[task.webhook_id] = plan.failing_since
        context: dict[str, Any] = {"event_id": task.event_id, "webhook_id": task.webhook_id,
                                   "attempt": task.attempt}
        if isinstance(situation, Attempted):
            context["duration_ms"] = round(situation.report.latency * 1000, 1)
        if plan.outcome == "success":
            self.metrics.delivered(task.event_created_at)
        else:
            self.metrics.deliveries.labels(plan.outcome).inc()
        if plan.note:
            level = logging.WARNING if plan.outcome in ("dead", "refused") else \
                logging.DEBUG if plan.outcome == "hop" else logging.INFO
            log.log(level, "%s", plan.note, extra=context)
        await asyncio.gather(*(self._perform(write, task) for write in plan.writes))
        return True

    async def _perform(self, write: Write, task: DeliveryTask) -> None:
        match write:
            case RecordAttempt(attempt):
                await self._send(self.topics.attempts, task.webhook_id, _encoder.encode(attempt))
            case Retry(tier, retry):
                await self._send(self.topics.retry_tiers[tier], task.webhook_id,
                                 _encoder.encode(retry))
            case DeadLetter(letter):
                await self._send(self.topics.deliveries_dlq, task.webhook_id,
                                 _encoder.encode(letter))
            case Disable(reason):
                await self._disable(task.webhook_id, reason)

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(topic, value, key=key.encode())

    async def _dead_letter_raw(self, record: ConsumerRecord, reason: str) -> bool:
        """A record that is no task: to deliveries.dlq as it was, with its key."""
        log.error("undecodable delivery task at %s/%d@%d: %s",
                  record.topic, record.partition, record.offset, reason)
        assert self._producer is not None
        await self._producer.send_and_wait(self.topics.deliveries_dlq, record.value,
                                           key=record.key,
                                           headers=[("hookbus-error", reason.encode()[:1000])])
        self.metrics.deliveries.labels("dead").inc()
        return True

    async def _disable(self, webhook_id: str, reason: str) -> None:
        """Disable the webhook's current record, unless a newer one wins (the
        view's write is conditional on the version it replaces)."""
        current = self.view.get(webhook_id)
        if current is None or not current.enabled:
            return
        disabled = msgspec.structs.replace(current, enabled=False, disabled_reason=reason,
                                           updated_at=datetime.now(UTC),
                                           version=current.version + 1)
        assert self._producer is not None
        try:
            won = await self.view.write(self._producer, disabled)
        except (KafkaError, WriteNotConfirmed, SecretsUnopened) as exc:
            log.warning("webhook not disabled (%r); its next failure tries again", exc,
                        extra={"webhook_id": webhook_id})
            return
        if won:
            self._failing_since.pop(webhook_id, None)
            log.warning("webhook disabled: %s", reason, extra={"webhook_id": webhook_id})
        else:
            log.info("webhook not disabled: a newer record of it was written meanwhile",
                     extra={"webhook_id": webhook_id})

    # -- committing, rebalancing, stopping ---------------------------------------
    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets = {tp: offset for tp, offset in self.watermarks.committable().items()
                   if tp in consumer.assignment()}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # e.g. the broker restarting: commit later
            log.warning("commit failed, will retry: %r", exc)
            return
        self.watermarks.committed(offsets)

    async def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Set the lag gauges; a rebalance may revoke partitions meanwhile, so
        the assignment is checked again after every await."""
        for tp in list(consumer.assignment()):
            done = self.watermarks.committed_offset(tp)
            if done is None:  # nothing committed here yet: ask the group, once
                try:
                    done = await consumer.committed(tp) or 0
                except KafkaError:
                    continue
                if tp not in consumer.assignment():
                    continue
                self.watermarks.committed({tp: done})
            end = consumer.highwater(tp)
            if end is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, end - done))

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Let the work of revoked partitions finish (briefly), commit what is
        finished, and forget them: anything unfinished is read again by the new
        owner, and what finishes here later has no effect."""
        gone = set(revoked)
        for tp in gone:
            self._paused.pop(tp, None)
        consumer = self._consumer
        if consumer is not None:  # read nothing more of them meanwhile
            with contextlib.suppress(IllegalStateError):
                consumer.pause(*(tp for tp in gone if tp in consumer.assignment()))
        left = await self._wind_down(gone, self.settings.delivery_timeout + REVOKE_MARGIN)
        if left:
            log.info("rebalance: %d queued tasks left to the partitions' new owners", left)
        consumer = self._consumer
        if consumer is not None:
            offsets = {tp: o for tp, o in self.watermarks.committable().items() if tp in gone}
            if offsets:
                try:
                    await consumer.commit(offsets)
                except KafkaError as exc:  # the new owner repeats these records
                    log.warning("commit on revocation failed: %r", exc)
        self.watermarks.forget(gone)
        for tp in gone:
            with contextlib.suppress(KeyError):  # never observed
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    async def _unless_stopping(self, work: Coroutine[Any, Any, None]) -> None:
        """`work`, unless a stop is requested before it ends (then cancelled)."""
        if self._stopping.is_set():
            work.close()
            return
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.result()
        else:
            log.info("stopping: cancelled a commit or lag reading under way")

    async def _drain(self, consumer: AIOKafkaConsumer) -> Shutdown:
        """On stop: the attempts under way, and queued tasks while there is time,
        finish within a deadline and are committed; the rest stay uncommitted
        (read again after the restart). Returns the rest of the stop's steps,
        whose budget starts now."""
        budget = self.settings.delivery_timeout + 5
        if self._handles or self.queue.queued:
            log.info("finishing %d attempts under way and %d queued (at most %gs)",
                     self.queue.running, self.queue.queued, budget)
        left = await self._wind_down(None, budget)
        if left:
            log.info("%d queued tasks left for the next run", left)
        shutdown = Shutdown(CLOSE_BUDGET, log)
        # Only finished work is committed; abandoned, it is done again after the restart.
        await shutdown.step("the final commit", lambda: self._commit(consumer),
                            FINAL_COMMIT_LIMIT)
        return shutdown

    async def _wind_down(self, partitions: set[TopicPartition] | None, budget: float) -> int:
        """Let the work of `partitions` (None: all) finish within `budget`
        seconds: their queued tasks may still start while an attempt started then
        can end in time; then the rest leave the queue, uncommitted. Returns how
        many were left."""
        def ours(tp: TopicPartition) -> bool:
            return partitions is None or tp in partitions

        started = time.monotonic()
        last_start = started + max(0.0, budget - self.settings.delivery_timeout)
        while any(ours(entry.tp) for entry in self.queue.items()) and \
                time.monotonic() < last_start:
            await asyncio.sleep(0.05)
        left = len(self.queue.remove(lambda entry: ours(entry.tp)))
        while any(ours(tp) for tp in self._handles.values()) and \
                time.monotonic() < started + budget:
            await asyncio.sleep(0.05)
        return left


def _decode(record: ConsumerRecord) -> tuple[DeliveryTask | None, str]:
    if record.value is None:
        return None, "a null value"
    try:
        return delivery_task_decoder.decode(record.value), ""
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter
        return None, str(exc)                                 # for invalid UTF-8 in a string
