"""The deliverer: consumes `deliveries` and the retry tiers, attempts each task,
and writes what follows (a retry, a dead letter, the attempt record).

Isolation: many attempts run at once, from any partition; an offset is committed
only up to the lowest unfinished record of its partition (`Watermarks`), and
only after that record's outputs were acknowledged. Each target has a cap on
attempts at once; a target already holding half the capacity, or whose breaker
is open, has further tasks moved to a retry tier instead of waiting, so one
slow endpoint never holds the others up.

Retry tiers: a tier partition whose head record is not yet due is paused and
rewound to that record until it is; nothing sleeps per record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from urllib.parse import urlsplit

import msgspec
from aiohttp.abc import AbstractResolver
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from schemas.attempts import Attempt
from schemas.deliveries import DeliveryTask, delivery_task_decoder
from schemas.webhooks import Webhook
from services.common.ops_server import create_ops_app, start_ops_server
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from services.deliverer.attempt import Attempter, Report, guarded_session
from services.deliverer.breaker import Breakers
from services.deliverer.metrics import DelivererMetrics
from services.deliverer.outcomes import Deferred, Delivered, Failed, Gone, Outcome, Refused
from services.deliverer.retry_policy import GiveUp, deferral, next_step
from services.deliverer.settings import Settings
from services.deliverer.watermarks import Watermarks

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
COMMIT_INTERVAL = 0.5


def target_of(url: str) -> str:
    """What the per-target cap and breaker count by: the endpoint's URL without
    its query. Not the host alone: endpoints of many customers can share one
    host (a SaaS receiver), and one of them failing must not hold up the rest."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


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
        self.metrics = DelivererMetrics()
        self.view = WebhooksView(settings.kafka.bootstrap, self.topics.webhooks)
        self.watermarks = Watermarks()
        self.breakers = Breakers()
        self.assigned = False
        self._resolver = resolver
        self._held: Counter[str] = Counter()           # tasks attempting or waiting, per target
        self._slots: dict[str, asyncio.Semaphore] = {}  # per target: attempts at once
        self._failing_since: dict[str, float] = {}     # webhook id -> first failure of a streak
        self._paused: dict[TopicPartition, float] = {}  # tier partition -> when its head is due
        self._tasks: set[asyncio.Task[None]] = set()
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
        bootstrap = settings.kafka.bootstrap
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{settings.kafka.topic_prefix}deliverer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_in_flight,
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
            await self._drain(consumer)
        finally:
            self._consumer = None
            await consumer.stop()
            await self._producer.stop()
            await session.close()
            await self.view.stop()
            await ops.cleanup()
            log.info("deliverer stopped")
        if self._fatal is not None:
            raise RuntimeError("a delivery task failed unexpectedly") from self._fatal

    async def _consume(self, consumer: AIOKafkaConsumer, view_task: asyncio.Task[None]) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            if view_task.done():
                raise RuntimeError("the webhooks view stopped") from view_task.exception()
            room = self.settings.max_in_flight - len(self._tasks)
            if room <= 0:
                self._room.clear()
                try:
                    await asyncio.wait_for(self._room.wait(), COMMIT_INTERVAL)
                except TimeoutError:
                    pass
            else:
                batches = await consumer.getmany(timeout_ms=200, max_records=room)
                for tp, records in batches.items():
                    self._dispatch(consumer, tp, records)
            self._resume_due(consumer)
            self.metrics.observe_state(len(self._tasks), self.breakers.open_count(time.time()),
                                       len(self._paused))
            if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                await self._commit(consumer)
                await self._observe_lag(consumer)
                last_commit = time.monotonic()

    def _dispatch(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                  records: list[ConsumerRecord]) -> None:
        now = time.time()
        for record in records:
            try:
                task = delivery_task_decoder.decode(record.value)
            except msgspec.DecodeError as exc:
                task = None
                poison = str(exc)
            if task is not None and tp.topic in self.tier_topics and (task.due_at or 0) > now:
                # Not due: hold this partition at this record until it is.
                consumer.pause(tp)
                consumer.seek(tp, record.offset)
                self._paused[tp] = task.due_at or now
                return
            self.watermarks.started(tp, record.offset)
            work = self._handle(task, record) if task is not None else \
                self._dead_letter_raw(record, poison)
            handle = asyncio.create_task(self._finish(tp, record.offset, work))
            self._tasks.add(handle)

    async def _finish(self, tp: TopicPartition, offset: int, work: object) -> None:
        try:
            await work  # type: ignore[misc]
            self.watermarks.finished(tp, offset)
        except Exception as exc:  # an unknown failure must not leave a stuck consumer
            log.critical("delivery task at %s@%d failed; stopping", tp, offset, exc_info=exc)
            self._fatal = exc
            self._stopping.set()
        finally:
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._room.set()

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.time()
        for tp, due in list(self._paused.items()):
            if due <= now:
                del self._paused[tp]
                if tp in consumer.assignment():
                    consumer.resume(tp)

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
        """Let the attempts of revoked partitions finish (briefly), commit them,
        and forget them; anything unfinished is attempted again by the new owner."""
        deadline = time.monotonic() + self.settings.delivery_timeout
        while any(self.watermarks.in_flight(tp) for tp in revoked) and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        consumer = self._consumer
        if consumer is not None:
            offsets = {tp: o for tp, o in self.watermarks.committable().items() if tp in revoked}
            if offsets:
                try:
                    await consumer.commit(offsets)
                except KafkaError as exc:  # the new owner repeats these records
                    log.warning("commit on revocation failed: %r", exc)
        self.watermarks.forget(list(revoked))
        for tp in revoked:
            self._paused.pop(tp, None)
            with contextlib.suppress(KeyError):  # never observed
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        deadline = self.settings.delivery_timeout + 5
        if self._tasks:
            log.info("finishing %d attempts under way (at most %gs)", len(self._tasks), deadline)
            await asyncio.wait(set(self._tasks), timeout=deadline)
        await asyncio.shield(self._commit(consumer))

    async def _handle(self, task: DeliveryTask, record: ConsumerRecord) -> None:
        context = {"event_id": task.event_id, "webhook_id": task.webhook_id,
                   "attempt": task.attempt}
        webhook = self.view.get(task.webhook_id)
        if webhook is None or not webhook.enabled:
            log.info("dropped: the webhook was deleted or disabled", extra=context)
            self.metrics.deliveries.labels("dropped").inc()
            return
        if webhook.target_type == "DISMISS":
            self.metrics.deliveries.labels("dismissed").inc()
            return
        report = await self._attempt(webhook, task)
        outcome = report.outcome
        now = time.time()
        writes = []
        if not isinstance(outcome, Deferred):
            writes.append(self._record_attempt(task, report))
        context["duration_ms"] = round(report.latency * 1000, 1)
        if isinstance(outcome, Delivered):
            self._failing_since.pop(webhook.id, None)
            self.metrics.delivered(report.latency, task.event_created_at)
            log.info("delivered (HTTP %d)", outcome.status, extra=context)
        elif isinstance(outcome, Gone | Refused):
            log.warning("not retried: %s", outcome.error, extra=context)
            if isinstance(outcome, Gone):
                writes.append(self._disable(webhook, f"the target answered {outcome.error}"))
            writes.append(self._dead_letter(task, outcome.error))
            self.metrics.deliveries.labels(
                "refused" if isinstance(outcome, Refused) else "dead").inc()
        else:
            writes += self._after_failure(webhook, task, outcome, now, context)
        await asyncio.gather(*writes)

    async def _attempt(self, webhook: Webhook, task: DeliveryTask) -> Report:
        """Attempt now if the target may be tried: wait for one of its
        `max_in_flight_per_target` slots unless it already holds half of this
        deliverer's capacity (running or waiting), then it is deferred instead."""
        target = target_of(webhook.target)
        if self._held[target] >= self.settings.max_in_flight // 2:
            return Report(Deferred("target saturated"), 0.0)
        # A task is never dead-lettered untried: its last attempt ignores the breaker.
        last_chance = not task.tried and task.attempt > len(self.settings.retry_schedule)
        if not last_chance and not self.breakers.allows(target, time.time()):
            return self._breaker_open(target)
        assert self._attempter is not None
        self._held[target] += 1
        try:
            async with self._slots_of(target):
                if not last_chance and self.breakers.is_open(target, time.time()):
                    return self._breaker_open(target)  # it opened while we waited
                report = await self._attempter.attempt(webhook, task)
        finally:
            self._held[target] -= 1
            if not self._held[target]:
                del self._held[target]
                del self._slots[target]
        if isinstance(report.outcome, Delivered):
            self.breakers.succeeded(target)
        elif isinstance(report.outcome, Failed | Gone):
            self.breakers.failed(target, time.time())
        if not isinstance(report.outcome, Refused):
            self.metrics.attempt_duration.observe(report.latency)
        return report

    def _slots_of(self, target: str) -> asyncio.Semaphore:
        slots = self._slots.get(target)
        if slots is None:
            slots = self._slots[target] = asyncio.Semaphore(self.settings.max_in_flight_per_target)
        return slots

    def _breaker_open(self, target: str) -> Report:
        wait = self.breakers.open_for(target, time.time())
        return Report(Deferred("circuit open: the target keeps failing", wait, breaker=True), 0.0)

    def _after_failure(self, webhook: Webhook, task: DeliveryTask, outcome: Outcome,
                       now: float, context: dict) -> list:
        assert isinstance(outcome, Failed | Deferred)
        writes = []
        if isinstance(outcome, Failed):
            since = self._failing_since.setdefault(webhook.id, now)
            if now - since >= self.settings.disable_after:
                writes.append(self._disable(
                    webhook, f"every attempt failed for {self.settings.disable_after:g}s"))
        schedule = self.settings.retry_schedule
        if isinstance(outcome, Failed):
            step = next_step(schedule, task.attempt, now, retry_after=outcome.retry_after)
        elif outcome.breaker:  # time runs out for a task whose endpoint stays broken
            step = next_step(schedule, task.attempt, now, retry_after=outcome.wait)
        else:  # saturated: wait without using up an attempt
            step = deferral(schedule, task.attempt, now, outcome.wait)
        if isinstance(step, GiveUp):
            log.warning("dead letter after %s: %s", step.reason, outcome.error, extra=context)
            writes.append(self._dead_letter(task, outcome.error))
            self.metrics.deliveries.labels("dead").inc()
            return writes
        if not isinstance(outcome, Deferred):
            log.info("attempt failed (%s); retry %d due in %.1fs", outcome.error, step.attempt,
                     step.due_at - now, extra=context)
        retry = msgspec.structs.replace(
            task, attempt=step.attempt, due_at=step.due_at, last_error=outcome.error,
            tried=task.tried or isinstance(outcome, Failed))
        writes.append(self._send(self.topics.retry_tiers[step.tier], task.webhook_id,
                                 _encoder.encode(retry)))
        self.metrics.deliveries.labels(
            "retry" if step.attempt > task.attempt else "deferred").inc()
        return writes

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(topic, value, key=key.encode())

    def _record_attempt(self, task: DeliveryTask, report: Report):  # type: ignore[no-untyped-def]
        outcome = report.outcome
        result = {Delivered: "success", Failed: "failure", Gone: "gone",
                  Refused: "refused"}[type(outcome)]
        attempt = Attempt(
            webhook_id=task.webhook_id, event_id=task.event_id, event_type=task.event_type,
            attempt=task.attempt, at=datetime.now(UTC), result=result,  # type: ignore[arg-type]
            latency_ms=round(report.latency * 1000, 2), status_code=report.status_code,
            error=getattr(outcome, "error", None), response=report.excerpt,
        )
        return self._send(self.topics.attempts, task.webhook_id, _encoder.encode(attempt))

    def _dead_letter(self, task: DeliveryTask, error: str):  # type: ignore[no-untyped-def]
        letter = msgspec.structs.replace(task, due_at=None, last_error=error)
        return self._send(self.topics.deliveries_dlq, task.webhook_id, _encoder.encode(letter))

    async def _dead_letter_raw(self, record: ConsumerRecord, reason: str) -> None:
        log.error("undecodable delivery task at %s/%d@%d: %s",
                  record.topic, record.partition, record.offset, reason)
        assert self._producer is not None
        await self._producer.send_and_wait(self.topics.deliveries_dlq, record.value,
                                           key=record.key)
        self.metrics.deliveries.labels("dead").inc()

    async def _disable(self, webhook: Webhook, reason: str) -> None:
        current = self.view.get(webhook.id)
        if current is None or not current.enabled:
            return
        disabled = msgspec.structs.replace(current, enabled=False, disabled_reason=reason,
                                           updated_at=datetime.now(UTC))
        await self._send(self.topics.webhooks, webhook.id, _encoder.encode(disabled))
        self.view.put(disabled)
        self._failing_since.pop(webhook.id, None)
        log.warning("webhook disabled: %s", reason, extra={"webhook_id": webhook.id})
