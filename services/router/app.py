"""The router: a Faust app that turns each event into one delivery task per
matching webhook.

At least once: an event's offset is acknowledged only after every task it
produced (or its dead letter) was acknowledged by Kafka, and Faust flushes its
producer before it commits."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import faust
import msgspec
from mode import Service
from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.events import EventDeadLetter
from schemas.webhooks import Webhook
from services.common.ops_server import create_ops_app, start_ops_server
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from services.router.matching import SubscriptionIndex
from services.router.planning import Unroutable, plan
from services.router.settings import Settings

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
ROUTE_CONCURRENCY = 16


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
    metrics, and the health server (run as a Faust worker service)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = RouterMetrics()
        self.index = SubscriptionIndex()
        self.view = WebhooksView(settings.kafka.bootstrap, self.topics.webhooks, self._reindex,
                                 keep=False)
        self.app = faust.App(
            f"{settings.kafka.topic_prefix}router",
            broker=";".join(f"kafka://{h}" for h in settings.kafka.bootstrap.split(",")),
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
            datadir=settings.data_dir,
        )
        events = self.app.topic(self.topics.events)
        self._deliveries = self.app.topic(self.topics.deliveries)
        self._dead_letters = self.app.topic(self.topics.events_dlq)
        # Several actors share each partition, so that one event's writes are
        # acknowledged while the next is routed; Faust commits only offsets
        # below the lowest unacknowledged event.
        self.app.agent(events, name="route", concurrency=ROUTE_CONCURRENCY)(self._route)
        self._assigned = False
        self._routed: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.app.on_partitions_assigned.connect(self._on_assigned)

    async def _on_assigned(self, sender: object, assigned: object, **_: object) -> None:
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
        if not self._assigned:
            return "waiting for the first partition assignment"
        if self.app.rebalancing:
            return "rebalancing"
        return None

    async def _route(self, stream: faust.StreamT) -> None:
        await self.view.ready.wait()
        async for event in stream.events():
            message = event.message
            outcome = plan(
                message.value, partition=message.partition, offset=message.offset,
                timestamp_ms=int(message.timestamp * 1000), index=self.index,
            )
            if isinstance(outcome, Unroutable):
                await self._dead_letter(message, outcome.reason)
                self._mark_routed(message)
                continue
            sent = [
                await self._deliveries.send(key=webhook_id.encode(), value=task)
                for webhook_id, task in outcome.tasks
            ]
            await asyncio.gather(*sent)
            self.metrics.deliveries.inc(len(sent))
            self.metrics.events.labels("routed" if sent else "unmatched").inc()
            self._mark_routed(message)

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

    async def _dead_letter(self, message: faust.types.Message, reason: str) -> None:
        log.warning("event record %s/%d@%d to the dead letters: %s",
                    message.topic, message.partition, message.offset, reason)
        letter = EventDeadLetter(
            reason=reason, topic=message.topic, partition=message.partition,
            offset=message.offset, value=message.value or b"", failed_at=datetime.now(UTC),
        )
        await (await self._dead_letters.send(key=message.key, value=_encoder.encode(letter)))
        self.metrics.events.labels("dead_lettered").inc()


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
