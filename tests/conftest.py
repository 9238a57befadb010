"""Fixtures shared by the integration tests: one real Kafka broker per session,
a unique topic prefix per test, and the services run as real processes."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiohttp.web
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devtools.broker import Broker, free_port
from devtools.processes import Stack
from services.common.sealing import SecretKeys
from services.common.config import KafkaAccess
from services.common.kafka_clients import client_options
from services.common.topics import Topics, ensure_topics
from services.ingest.auth import issue_token

JWT_SECRET = "test-secret-of-at-least-32-bytes-long"
# Two keys: `t2` seals, `t1` still opens (tests of re-sealing add and drop keys).
SECRET_KEYS_TEXT = ("t2:dGVzdC1rZXktdHdvLW9mLWV4YWN0bHktMzItYnl0ZXM=,"
                    "t1:dGVzdC1rZXktb25lLW9mLWV4YWN0bHktMzItYnl0ZXM=")
SECRET_KEYS = SecretKeys.parse(SECRET_KEYS_TEXT)
PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("kafka"), free_port(), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def topics(kafka: Broker, prefix: str, request: pytest.FixtureRequest) -> Topics:
    """The topics under this test's prefix; `@pytest.mark.partitions(n)` sets how many
    partitions each has (to put endpoints on one partition, say)."""
    marker = request.node.get_closest_marker("partitions")
    topics = Topics(prefix, retry_delays=(1, 2))
    await ensure_topics(kafka.bootstrap, topics.specs(),
                        partitions=marker.args[0] if marker else PARTITIONS)
    return topics


def token(app_id: str | None = None, scope: str = "app") -> str:
    # Some are made when a module is collected and used minutes later: 6 h, well
    # within HOOKBUS_JWT_MAX_LIFETIME (24 h).
    return issue_token(JWT_SECRET, scope=scope, app_id=app_id, lifetime=6 * 3600)


def auth(app_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(app_id)}"}


async def consumer_records(bootstrap: KafkaAccess, topic: str) -> list[ConsumerRecord]:
    """Every record of `topic` now, read from the start, with its partition and offset."""
    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        found: list[ConsumerRecord] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                found += batch
        return found
    finally:
        await consumer.stop()


async def group_offsets(bootstrap: KafkaAccess, group: str) -> dict[TopicPartition, int]:
    """The offsets `group` has committed, by partition."""
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def records(bootstrap: KafkaAccess, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` now, as (key, value) pairs, read from the start."""
    return [(r.key, r.value) for r in await consumer_records(bootstrap, topic)]


async def until(condition: Callable[[], Awaitable[object]], timeout: float = 20) -> None:
    """Until `await condition()` is true, polling every 0.1 s."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.1)


@pytest.fixture
async def producer(kafka: Broker) -> AsyncIterator[AIOKafkaProducer]:
    """A producer on the session's broker, to write records as a hostile or
    direct producer would."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


TEST_SETTINGS = {
    "HOOKBUS_JWT_SECRET": JWT_SECRET,
    "HOOKBUS_SECRET_KEYS": SECRET_KEYS_TEXT,
    "HOOKBUS_ALLOW_HTTP": "true",
    "HOOKBUS_ALLOWED_PRIVATE_CIDRS": "127.0.0.0/8,::1/128",
    "HOOKBUS_RETRY_SCHEDULE": "1s,2s",
    "HOOKBUS_DELIVERY_TIMEOUT": "5s",
}


def make_stack(bootstrap: str, prefix: str, log_dir: Path, **env: str) -> Stack:
    """A stack with the tests' settings: loopback http targets, a short schedule."""
    return Stack(bootstrap, prefix, log_dir, **(TEST_SETTINGS | env))


@pytest.fixture
async def stack(
    kafka: Broker, topics: Topics, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """The four services; `@pytest.mark.stack_env(NAME=value)` adds settings."""
    marker = request.node.get_closest_marker("stack_env")
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path,
                       **(marker.kwargs if marker else {}))
    for name in ("eventlog", "ingest", "router", "deliverer"):
        stack.start(name)
    try:
        await stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


Responder = Callable[[aiohttp.web.Request, int], Awaitable[aiohttp.web.StreamResponse]]


class Receiver:
    """A real HTTP (or, with an SSL context, HTTPS) endpoint on loopback that
    records every POST it gets and answers as each path is told to (204 unless)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []
        self._changed = asyncio.Condition()
        self.port = free_port()
        self._ssl = ssl_context
        self._responders: dict[str, Responder] = {}
        self._runner: aiohttp.web.AppRunner | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}{path}"

    def respond(self, path: str, responder: Responder) -> None:
        """Answer POSTs to `path` with `responder(request, n)`, n counting from 1."""
        self._responders[path] = responder

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, event_id: str, timeout: float = 30) -> Received:
        """The first POST to `path` for `event_id`, waiting for it to come."""
        def found() -> Received | None:
            return next((r for r in self.on(path) if r.headers.get("webhook-id") == event_id), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), timeout)
        received = found()
        assert received is not None
        return received

    async def wait_count(self, path: str, count: int, timeout: float = 30) -> list[Received]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.on(path)) >= count), timeout)
        return self.on(path)

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        async with self._changed:
            self.received.append(
                Received(request.path, dict(request.headers), body, time.monotonic()))
            self._changed.notify_all()
        responder = self._responders.get(request.path)
        if responder is None:
            return aiohttp.web.Response(status=204)
        return await responder(request, len(self.on(request.path)))

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", self.port,
                                  ssl_context=self._ssl).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
