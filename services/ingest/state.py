"""What one ingest instance shares between its handlers: settings, the Kafka
producer and admin client, the webhooks view, the attempts log, metrics."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas.webhooks import Webhook
from services.common.topics import Topics, missing_topics
from services.common.webhooks_view import WebhooksView, WriteNotConfirmed
from services.ingest.attempts_log import AttemptsLog
from services.ingest.errors import ApiError
from services.ingest.idempotency import IdempotencyKeys
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import Settings

log = logging.getLogger(__name__)


class Ingest:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = IngestMetrics()
        # Ingest repairs the webhooks topic after every record that lost (see
        # WebhookLog): it holds the API's producer.
        self.view = WebhooksView(settings.kafka.bootstrap, self.topics.webhooks,
                                 repair_with=lambda: self.producer)
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

    def check_webhook_writes_open(self) -> None:
        """503 until the webhooks view is loaded: a write checked against a view
        that has not read the whole topic could refuse or resurrect by mistake."""
        if self.producer is None or not self.view.ready.is_set():
            raise ApiError(503, "webhooks are still loading; retry later")

    async def new_webhook_id(self, app_id: str) -> str:
        """An id that puts the webhook in its app's partition (see WebhooksView)."""
        assert self.producer is not None
        try:
            return await self.view.new_id(self.producer, app_id)
        except KafkaError as exc:
            raise self._unavailable(exc) from exc

    async def write_webhook(self, webhook: Webhook) -> bool:
        """Append a webhook record; True when it won (see WebhooksView.write)."""
        assert self.producer is not None
        try:
            return await self.view.write(self.producer, webhook)
        except (KafkaError, WriteNotConfirmed) as exc:
            raise self._unavailable(exc) from exc

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Append a tombstone; True once the webhook is deleted, for good."""
        assert self.producer is not None
        try:
            return await self.view.delete(self.producer, webhook_id)
        except (KafkaError, WriteNotConfirmed) as exc:
            raise self._unavailable(exc) from exc

    @staticmethod
    def _unavailable(exc: Exception) -> ApiError:
        log.error("webhook write failed: %r", exc)
        if isinstance(exc, WriteNotConfirmed):
            return ApiError(503, "the webhook write is not confirmed yet; read the webhook "
                                 "back before retrying")
        return ApiError(503, "the event store is unavailable; retry later")

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
