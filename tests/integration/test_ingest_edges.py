"""Ingest at its edges, on the real broker: hostile JSON (deep, large) is refused
in the contract's error shape with nothing written; a batch is written in one
Kafka transaction, so a failed batch leaves nothing a read_committed consumer
sees; `Idempotency-Key` gives the same ids on retries, on every instance and
after restarts, and new ids once its TTL has passed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from devtools.broker import Broker, free_port
from services.common.config import KafkaSettings
from services.common.topics import TopicSpec, Topics, ensure_topics
from services.ingest.app import create_app
from services.ingest.http import MAX_DEPTH, json_depth
from services.ingest.settings import Settings
from tests.conftest import JWT_SECRET, PARTITIONS, SECRET_KEYS, auth, records
from tests.integration.conftest import APP, Api, assert_error

EVENTS = f"/v1/apps/{APP}/events"
BATCH = f"/v1/apps/{APP}/events/batch"


def nested(depth: int) -> bytes:
    """`depth` levels of arrays inside an object: valid JSON, hostile depth."""
    return b'{"deep": ' + b"[" * depth + b"]" * depth + b"}"


def event_body(data: bytes) -> bytes:
    return b'{"type": "message.received", "data": ' + data + b"}"


# -- hostile JSON ---------------------------------------------------------------


@pytest.mark.parametrize(("body", "depth"), [
    (nested(MAX_DEPTH), MAX_DEPTH + 1),
    (b"[" * 3000 + b"]" * 3000, 3000),
    (b'{"a": "' + b"[" * 100 + b'"}', 1),  # brackets in a string are text
    (b'{"a": "\\\\", "b": ' + b"[" * 70 + b"]" * 70 + b"}", 71),  # an escaped backslash
    (b'{"a": "\\"' + b"[" * 70 + b'"}', 1),  # an escaped quote does not end the string
    (b'{"a": [[1], {"b": [2]}]}', 0),  # too few brackets to be too deep: not scanned
])
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


@pytest.mark.parametrize("path", [EVENTS, BATCH])
async def test_deep_nesting_is_a_400_and_writes_nothing(api: Api, path: str) -> None:
    event = event_body(nested(3000))
    body = event if path == EVENTS else b'{"events": [' + event + b"]}"
    status, error = await api.call("POST", path, headers=auth(APP), data=body)
    assert_error(status, error, 400)
    assert error is not None and "nest" in error["error"]["message"]
    assert await api.written() == 0


async def test_reasonable_nesting_is_accepted(api: Api) -> None:
    status, accepted = await api.call("POST", EVENTS, headers=auth(APP),
                                      data=event_body(nested(40)))
    assert status == 202 and accepted is not None
    assert len(await records(api.bootstrap, api.topics.events)) == 1


@pytest.mark.parametrize("path", [EVENTS, BATCH])
@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
async def test_an_oversized_body_is_a_413_and_writes_nothing(
    api: Api, path: str, chunked: bool
) -> None:
    event = event_body(b'{"text": "' + b"a" * 300 * 1024 + b'"}')
    body = event if path == EVENTS else b'{"events": [' + event + b"]}"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start:start + 16 * 1024]

    status, error = await api.call("POST", path, headers=auth(APP),
                                   data=chunks() if chunked else body)
    assert_error(status, error, 413)
    assert error is not None and "256 KiB" in error["error"]["message"]
    assert await api.written() == 0


# -- atomic batches ---------------------------------------------------------------


@dataclass
class Instance:
    base: str
    runner: web.AppRunner

    async def call(self, http: aiohttp.ClientSession, method: str, path: str,
                   **kwargs: object) -> tuple[int, dict]:
        async with http.request(method, self.base + path, **kwargs) as response:
            return response.status, await response.json()


@asynccontextmanager
async def ingest(bootstrap: str, topics: Topics, **settings: object) -> AsyncIterator[Instance]:
    """One ingest instance on its own port, ready (its followers caught up)."""
    instance = await start_ingest(bootstrap, topics, **settings)
    try:
        yield instance
    finally:
        await instance.runner.cleanup()


async def start_ingest(bootstrap: str, topics: Topics, **settings: object) -> Instance:
    port = free_port()
    app = create_app(Settings(kafka=KafkaSettings(bootstrap, topics.prefix),
                              jwt_secret=JWT_SECRET, secret_keys=SECRET_KEYS, http_port=port,
                              **settings))  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    instance = Instance(f"http://127.0.0.1:{port}", runner)
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if (await instance.call(http, "GET", "/readyz"))[0] == 200:
                return instance
            await asyncio.sleep(0.1)
    await runner.cleanup()
    raise AssertionError("ingest never became ready")


async def committed(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of `topic` that a read_committed consumer sees now."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        # With read_committed, the end offsets are the last stable offsets: an
        # open transaction would hold them back, never hide a committed record.
        ends = await consumer.end_offsets(list(consumer.assignment()))
        found: list[bytes] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                found += [r.value for r in batch if r.value is not None]
        return found
    finally:
        await consumer.stop()


@pytest.fixture
async def small_events_topic(kafka: Broker, prefix: str) -> Topics:
    """This test's topics, with an `events` topic that refuses records over 4 KiB."""
    topics = Topics(prefix, retry_delays=(1, 2))
    specs = [TopicSpec(s.name, s.config | {"max.message.bytes": "4096"})
             if s.name == topics.events else s for s in topics.specs()]
    await ensure_topics(kafka.bootstrap, specs, partitions=PARTITIONS)
    return topics


async def test_a_failed_batch_leaves_nothing_visible(
    kafka: Broker, small_events_topic: Topics
) -> None:
    topics = small_events_topic
    small = [{"type": "message.received", "data": {"n": n, "marker": "doomed"}} for n in range(3)]
    too_large = {"type": "message.received", "data": {"marker": "doomed", "text": "x" * 20_000}}
    async with ingest(kafka.bootstrap, topics) as instance, aiohttp.ClientSession() as http:
        status, error = await instance.call(http, "POST", BATCH, headers=auth(APP),
                                            json={"events": [*small, too_large]})
        assert status in (413, 503)
        assert_error(status, error, status)
        # The fault was real: the small records reached the log, in a transaction
        # that was then aborted.
        assert [v for _, v in await records(kafka.bootstrap, topics.events)
                if v is not None and b"doomed" in v]

        # The batch producer recovers: the next batch and a single event are written.
        status, accepted = await instance.call(
            http, "POST", BATCH, headers=auth(APP),
            json={"events": [{"type": "message.received", "data": {"n": n}} for n in range(2)]})
        assert status == 202, accepted
        status, single = await instance.call(http, "POST", EVENTS, headers=auth(APP),
                                             json={"type": "message.sent"})
        assert status == 202, single

    visible = await committed(kafka.bootstrap, topics.events)
    ids = [msgspec.json.decode(v)["id"] for v in visible]
    assert sorted(ids) == sorted([*accepted["ids"], single["id"]])
    assert not [v for v in visible if b"doomed" in v]


async def test_a_batch_is_committed_as_one(api: Api) -> None:
    events = [{"type": "message.received", "data": {"n": n}} for n in range(20)]
    status, accepted = await api.call("POST", BATCH, headers=auth(APP), json={"events": events})
    assert status == 202 and accepted is not None
    visible = await committed(api.bootstrap, api.topics.events)
    assert sorted(msgspec.json.decode(v)["id"] for v in visible) == sorted(accepted["ids"])


# -- Idempotency-Key ------------------------------------------------------------------


async def test_a_batch_retried_with_the_same_key_gets_the_same_ids(api: Api) -> None:
    events = [{"type": "message.received", "data": {"n": n}} for n in range(3)]
    keyed = auth(APP) | {"Idempotency-Key": "import-7"}
    answers = [await api.call("POST", BATCH, headers=keyed, json={"events": events})
               for _ in range(2)]
    assert [status for status, _ in answers] == [202, 202]
    first, again = (body["ids"] for _, body in answers)  # type: ignore[index]
    assert first == again and len(set(first)) == 3
    assert len(await committed(api.bootstrap, api.topics.events)) == 3  # the retry wrote nothing

    status, other = await api.call("POST", BATCH, headers=auth(APP), json={"events": events})
    assert status == 202 and other is not None and not set(other["ids"]) & set(first)
    status, single = await api.call("POST", EVENTS, headers=keyed, json=events[0])
    assert status == 202 and single is not None and single["id"] not in first

    status, error = await api.call("POST", BATCH, headers=keyed, json={"events": events[:2]})
    assert_error(status, error, 400, "Idempotency-Key")
    assert len(await committed(api.bootstrap, api.topics.events)) == 7


async def test_a_key_gives_the_same_id_on_every_instance_and_after_a_restart(
    kafka: Broker, topics: Topics
) -> None:
    keyed = auth(APP) | {"Idempotency-Key": "order-9"}
    event = {"type": "payment.succeeded", "data": {"amount": 12}}
    async with aiohttp.ClientSession() as http:
        first = await start_ingest(kafka.bootstrap, topics)
        try:
            status, published = await first.call(http, "POST", EVENTS, headers=keyed, json=event)
            assert status == 202
            async with ingest(kafka.bootstrap, topics) as second:
                assert await second.call(http, "POST", EVENTS, headers=keyed, json=event) \
                    == (202, published)
                await first.runner.cleanup()
                first = await start_ingest(kafka.bootstrap, topics)  # a restart
                assert await first.call(http, "POST", EVENTS, headers=keyed, json=event) \
                    == (202, published)
                assert await second.call(http, "POST", EVENTS, headers=keyed, json=event) \
                    == (202, published)
        finally:
            await first.runner.cleanup()
    # Each instance knew the key from the idempotency topic: one event was written.
    assert len(await records(kafka.bootstrap, topics.events)) == 1


async def test_a_key_reused_after_its_ttl_gets_a_new_id(kafka: Broker, topics: Topics) -> None:
    ttl = 5.0
    keyed = auth(APP) | {"Idempotency-Key": "order-10"}
    event = {"type": "payment.succeeded"}
    async with ingest(kafka.bootstrap, topics, idempotency_ttl=ttl) as first, \
            aiohttp.ClientSession() as http:
        status, old = await first.call(http, "POST", EVENTS, headers=keyed, json=event)
        assert status == 202
        answered = time.time()
        await asyncio.sleep(ttl - (time.time() - answered) + 0.5)
        status, new = await first.call(http, "POST", EVENTS, headers=keyed, json=event)
        assert status == 202 and new["id"] != old["id"]
        # The new id is the key's from now on (for a TTL).
        assert await first.call(http, "POST", EVENTS, headers=keyed, json=event) == (202, new)
    assert len(await records(kafka.bootstrap, topics.events)) == 2
