"""What one ingest instance shares between its handlers: settings, the Kafka
producers (idempotent; transactional for batches) and admin client, the
webhooks view, the idempotency keys, the event log's client, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from schemas.idempotency import IdempotencyRecord
from services.common.config import KafkaAccess
from services.common.kafka_clients import LATENCY_LINGER_MS, client_options
from services.common.topic_follower import TopicFollower
from schemas.webhooks import Webhook
from services.common.topics import Topics, missing_topics
from services.common.webhooks_view import SecretsUnopened, WebhooksView, WriteNotConfirmed
from services.ingest.errors import ApiError
from services.ingest.eventlog_client import EventLogClient, relay_mark
from services.ingest.idempotency import IdempotencyKeys
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import Settings

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


class Ingest:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.metrics = IngestMetrics()
        # Ingest repairs the webhooks topic after every record that lost (see
        # WebhookLog): it holds the API's producer.
        self.view = WebhooksView(settings.kafka, self.topics.webhooks,
                                 repair_with=lambda: self.producer,
                                 keys=settings.secret_keys)
        self.idempotency = IdempotencyKeys()
        self.idempotency_follower = TopicFollower(
            settings.kafka, self.topics.idempotency,
            lambda record: self.idempotency.apply(record.key, record.value, time.time()))
        # The event log's routes are answered by the instance that owns the app.
        self.eventlog = EventLogClient(settings.eventlog_urls, self.metrics.eventlog_requests,
                                       mark=relay_mark(settings.jwt_secret))
        self.batches = TransactionalWriter(settings.kafka, _transactional_id(settings))
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

    async def produce_atomically(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Write records in one Kafka transaction: read_committed consumers see
        all of them or none."""
        try:
            await self.batches.write(topic, records)
        except MessageSizeTooLargeError as exc:
            log.error("kafka transaction on %s aborted: %r", topic, exc)
            raise ApiError(413, f"an event is larger than the {topic} topic accepts; "
                                "nothing was written") from exc
        except (KafkaError, TimeoutError) as exc:
            log.error("kafka transaction on %s failed: %r", topic, exc)
            raise ApiError(503, "the event store is unavailable; retry later") from exc

    async def idempotency_keys(self) -> IdempotencyKeys:
        """The keys every replica used, once loaded (503 if that takes long)."""
        try:
            await asyncio.wait_for(self.idempotency_follower.ready.wait(), 5)
        except TimeoutError:
            raise ApiError(503, "idempotency keys are still loading; retry later") from None
        return self.idempotency

    async def remember_key(self, digest: str, record: IdempotencyRecord) -> None:
        """Tell every replica (and this one) what a key's request wrote."""
        await self.produce(self.topics.idempotency, digest, _json.encode(record))
        self.idempotency.put(digest, record, time.time())

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
        except SecretsUnopened as exc:
            log.error("webhook write refused: its secrets cannot be opened: %s", exc,
                      extra={"webhook_id": webhook.id})
            raise ApiError(409, f"webhook {webhook.id} cannot be changed now: its secrets "
                                "cannot be opened by this service (an operator must restore "
                                "its sealing key); it can still be read or deleted") from None

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
        if not self.idempotency_follower.ready.is_set():
            return "loading idempotency keys"
        try:
            names = [self.topics.events, self.topics.webhooks, self.topics.idempotency]
            missing = await asyncio.wait_for(missing_topics(self.admin, names), 2)
        except (KafkaError, TimeoutError) as exc:
            return f"kafka unreachable: {exc!r}"
        return f"missing topics: {', '.join(missing)}" if missing else None


TRANSACTION_TIMEOUT_MS = 15_000  # the broker aborts a transaction left open this long
TRANSACTION_BUDGET = 10.0  # seconds for one batch's transaction, a producer's start included


def _transactional_id(settings: Settings) -> str:
    """Unique per process, so that no two instances ever fence each other."""
    return (f"{settings.kafka.topic_prefix}ingest.{socket.gethostname()}:{settings.http_port}"
            f".{secrets.token_hex(4)}")


class TransactionalWriter:
    """Writes each batch of records in one Kafka transaction, one batch at a time
    (a transactional producer has one transaction open at most): read_committed
    consumers (the router) see all of a batch or none of it.

    Cost: a transaction that a crashed instance left open holds back
    read_committed consumers of its partitions until the broker aborts it
    (TRANSACTION_TIMEOUT_MS), as the next instance has another id."""

    def __init__(self, kafka: KafkaAccess, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self._kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async with self._lock:
            await self._started_producer()
        log.info("batches are written in transactions as %s", self.transactional_id)

    async def stop(self) -> None:
        async with self._lock:
            self._retire()
        await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def write(self, topic: str, records: list[tuple[str, bytes]]) -> None:
        """Commit `records`, or raise (KafkaError, TimeoutError): then they are
        aborted or, when the commit itself timed out, their fate is unknown."""
        async with self._lock:
            try:
                async with asyncio.timeout(TRANSACTION_BUDGET):
                    producer = await self._started_producer()
                    await producer.begin_transaction()
                    await self._send_all(producer, topic, records)
                    await producer.commit_transaction()
            except BaseException:
                # A failed transaction can leave the producer's sequence numbers out
                # of step with the broker's: the next batch gets a new producer. It
                # has the same id, so the broker fences this one and aborts whatever
                # it left open, if its own abort did not.
                self._retire()
                raise

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, topic: str,
                        records: list[tuple[str, bytes]]) -> None:
        sent: list[asyncio.Future[object]] = []
        try:
            for key, value in records:
                sent.append(await producer.send(topic, value, key=key.encode()))
        finally:
            if sent:
                await asyncio.wait(sent)  # (unlike gather, never cancels them)
        # Every record acknowledged before the commit: aiokafka would commit a
        # transaction that lost a record.
        failed = next((f.exception() for f in sent if f.exception() is not None), None)
        if failed is not None:
            raise failed

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                **client_options(self._kafka), transactional_id=self.transactional_id,
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, acks="all",
                enable_idempotence=True, linger_ms=LATENCY_LINGER_MS,
            )
            await self._producer.start()
        return self._producer

    def _retire(self) -> None:
        """Abort what the producer has open and stop it, in the background."""
        producer, self._producer = self._producer, None
        if producer is not None:
            task = asyncio.create_task(_abort_and_stop(producer), name="retire a batch producer")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)


async def _abort_and_stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):  # no transaction open, or it cannot end now
        async with asyncio.timeout(TRANSACTION_BUDGET):
            await producer.abort_transaction()
    try:
        async with asyncio.timeout(TRANSACTION_BUDGET):
            await producer.stop()
    except Exception as exc:
        log.warning("a retired batch producer did not stop cleanly: %r", exc)


INGEST = web.AppKey("ingest", Ingest)
