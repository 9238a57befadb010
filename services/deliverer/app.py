"""The deliverer: consumes delivery tasks and attempts them.

At least once: a batch's offsets are committed only after every attempt in it
concluded and every record it produced (dead letters) was acknowledged."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from importlib.metadata import version

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.deliveries import DeliveryTask, delivery_task_decoder
from services.common.ops_server import create_ops_app, start_ops_server
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from services.deliverer.attempt import Attempter, ssl_context
from services.deliverer.outcomes import Delivered, Failed, Refused
from services.deliverer.settings import Settings

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class DelivererMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "hookbus_deliveries_total", "Delivery tasks concluded, by outcome.",
            ["outcome"], registry=self.registry,
        )
        self.attempt_duration = Histogram(
            "hookbus_delivery_attempt_duration_seconds", "Duration of one HTTP attempt.",
            registry=self.registry, buckets=_LATENCY_BUCKETS,
        )
        self.event_to_delivery = Histogram(
            "hookbus_event_to_delivery_seconds", "From the event's created_at to its delivery.",
            registry=self.registry, buckets=_LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "hookbus_delivery_attempts_in_flight", "Attempts under way.", registry=self.registry,
        )


class Deliverer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = DelivererMetrics()
        self.view = WebhooksView(settings.kafka.bootstrap, self.topics.webhooks)
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def readiness(self) -> str | None:
        if not self.view.ready.is_set():
            return "loading webhooks"
        if self._consumer is None:
            return "starting"
        return None

    def stop(self) -> None:
        """Stop fetching; the batch under way finishes and is committed."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        bootstrap = settings.kafka.bootstrap
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        consumer = AIOKafkaConsumer(
            self.topics.deliveries,
            bootstrap_servers=bootstrap,
            group_id=f"{settings.kafka.topic_prefix}deliverer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_in_flight,
        )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.max_in_flight, ssl=ssl_context(settings.ca_bundle)
            ),
            timeout=aiohttp.ClientTimeout(total=settings.delivery_timeout),
        )
        attempter = Attempter(session, settings.target_policy, f"hookbus/{version('hookbus')}")
        ops = await start_ops_server(
            create_ops_app(self.metrics.registry, self.readiness),
            settings.metrics_host, settings.metrics_port,
        )
        view_task = await self.view.start()
        try:
            await producer.start()
            await self.view.ready.wait()
            await consumer.start()
            self._consumer = consumer
            log.info("deliverer consuming %s", self.topics.deliveries)
            await self._consume(consumer, producer, attempter, view_task)
        finally:
            self._consumer = None
            await consumer.stop()
            await producer.stop()
            await session.close()
            await self.view.stop()
            await ops.cleanup()
            log.info("deliverer stopped")

    async def _consume(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
        attempter: Attempter, view_task: asyncio.Task[None],
    ) -> None:
        while not self._stopping.is_set():
            if view_task.done():
                raise RuntimeError("the webhooks view stopped") from view_task.exception()
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                continue
            await asyncio.gather(*(
                self._handle(record, producer, attempter)
                for records in batches.values() for record in records
            ))
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})

    async def _handle(
        self, record: ConsumerRecord, producer: AIOKafkaProducer, attempter: Attempter
    ) -> None:
        try:
            task = delivery_task_decoder.decode(record.value)
        except msgspec.DecodeError as exc:
            log.error("undecodable delivery task at %s/%d@%d: %s",
                      record.topic, record.partition, record.offset, exc)
            await producer.send_and_wait(self.topics.deliveries_dlq, record.value, key=record.key)
            self.metrics.deliveries.labels("dead").inc()
            return
        context = {"event_id": task.event_id, "webhook_id": task.webhook_id,
                   "attempt": task.attempt}
        webhook = self.view.get(task.webhook_id)
        if webhook is None or not webhook.enabled:
            log.info("dropped: webhook deleted or disabled", extra=context)
            self.metrics.deliveries.labels("dropped").inc()
            return
        if webhook.target_type == "DISMISS":
            self.metrics.deliveries.labels("dismissed").inc()
            return
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            outcome = await attempter.attempt(webhook, task)
        finally:
            self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        context["duration_ms"] = round(elapsed * 1000, 1)
        if isinstance(outcome, Delivered):
            self.metrics.attempt_duration.observe(elapsed)
            self.metrics.event_to_delivery.observe(
                (datetime.now(UTC) - task.event_created_at).total_seconds()
            )
            self.metrics.deliveries.labels("success").inc()
            log.info("delivered (HTTP %d)", outcome.status, extra=context)
            return
        if isinstance(outcome, Failed):
            self.metrics.attempt_duration.observe(elapsed)
        log.warning("attempt failed: %s", outcome.error, extra=context)
        await self._dead_letter(task, outcome.error, producer)
        self.metrics.deliveries.labels("refused" if isinstance(outcome, Refused) else "dead").inc()

    async def _dead_letter(self, task: DeliveryTask, error: str, producer: AIOKafkaProducer) -> None:
        letter = msgspec.structs.replace(task, last_error=error)
        await producer.send_and_wait(
            self.topics.deliveries_dlq, _encoder.encode(letter), key=task.webhook_id.encode()
        )
