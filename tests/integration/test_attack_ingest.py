"""Hostile inputs against ingest and the shared webhooks view, on the real broker:
bytes a producer can write to any topic, bodies and headers a tenant can send.
Each test was written to fail on the code before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from devtools.broker import Broker, free_port
from schemas.webhooks import Webhook
from services.common.config import KafkaSettings
from services.common.target_policy import TargetPolicy
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from services.ingest.app import create_app
from services.ingest.idempotency import record_key
from services.ingest.settings import Settings
from services.ingest.state import INGEST, Ingest
from tests.conftest import JWT_SECRET, SECRET_KEYS, auth, records, until
from tests.integration.conftest import APP, Api, assert_error

HOOKS = f"/v1/apps/{APP}/webhooks"
EVENTS = f"/v1/apps/{APP}/events"






@pytest.fixture
async def ingest(kafka: Broker, topics: Topics) -> AsyncIterator[tuple[Api, Ingest]]:
    """Ingest in this process, with a handle on its state (to see its followers)."""
    settings = Settings(
        kafka=KafkaSettings(kafka.bootstrap, topics.prefix), jwt_secret=JWT_SECRET,
        secret_keys=SECRET_KEYS,
        http_port=free_port(), target_policy=TargetPolicy(allow_http=False),
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    async with aiohttp.ClientSession() as http:
        api = Api(f"http://127.0.0.1:{settings.http_port}", http, topics, kafka.bootstrap)
        await until(lambda: _ready(api))
        yield api, app[INGEST]
    await runner.cleanup()


async def _ready(api: Api) -> bool:
    return (await api.call("GET", "/readyz"))[0] == 200


def _followers_alive(ingest: Ingest) -> None:
    follower = ingest.idempotency_follower
    assert follower._task is not None and not follower._task.done(), follower.topic
    for task in ingest.view._tasks:
        assert not task.done(), task


async def _raw_request(api: Api, request: bytes) -> bytes:
    """Send bytes that no well-behaved client would (aiohttp's client encodes
    headers itself) and read the whole answer."""
    host, port = api.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


# --- one record that stopped every service -------------------------------------


async def test_a_webhooks_record_with_invalid_utf8_stops_no_reader(
    ingest: tuple[Api, Ingest], producer: AIOKafkaProducer
) -> None:
    """A string holding invalid UTF-8 raised UnicodeDecodeError (not a msgspec
    DecodeError) in WebhooksView._apply: the follower of ingest, router and
    deliverer died, and each crash-looped on the same compacted record."""
    api, state = ingest
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"})
    assert status == 201 and created is not None
    good = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    value = msgspec.json.encode(good[1] | {"version": 2, "description": "XX"})
    poison = value.replace(b'"XX"', b'"\xff\xfe"')
    current = state.view._log.current(created["id"])
    assert current is not None
    await producer.send_and_wait(api.topics.webhooks, poison, key=created["id"].encode(),
                                 partition=current.partition)

    async def repaired() -> bool:  # ingest appends the current record again
        last = [v for k, v in await records(api.bootstrap, api.topics.webhooks)
                if k == created["id"].encode()][-1]
        return last is not None and last != poison

    await until(repaired)
    _followers_alive(state)
    status, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert status == 200 and fetched is not None and fetched["version"] == 1
    # A service starting now (router, deliverer) loads the topic past the record.
    reader = WebhooksView(api.bootstrap, api.topics.webhooks, keys=SECRET_KEYS)
    following = await reader.start()
    try:
        async with asyncio.timeout(20):
            await reader.ready.wait()
        assert not following.done()
        got = reader.get(created["id"])
        assert got is not None and got.version == 1
    finally:
        await reader.stop()


async def test_an_idempotency_record_with_invalid_utf8_or_null_stops_nothing(
    ingest: tuple[Api, Ingest], producer: AIOKafkaProducer
) -> None:
    api, state = ingest
    digest = record_key(APP, "k1").encode()
    await producer.send_and_wait(
        api.topics.idempotency,
        b'{"event_id":"evt_\xff","expires_at":"2999-01-01T00:00:00Z"}', key=digest)
    await producer.send_and_wait(api.topics.idempotency, None, key=b"\xff\xfe")
    await producer.send_and_wait(api.topics.idempotency, b"{", key=b"not hex")
    await asyncio.sleep(1.5)
    _followers_alive(state)
    status, body = await api.call("POST", EVENTS, headers=auth(APP) | {"Idempotency-Key": "k2"},
                                  json={"type": "message.received"})
    assert status == 202, body


# --- bodies and headers that answered 500 ---------------------------------------


@pytest.mark.parametrize("method,path,body", [
    ("POST", EVENTS, b'{"type":"message.received","data":{"x":"\xff"}}'),
    ("POST", EVENTS + "/batch", b'{"events":[{"type":"message.received","data":{"\xc3":1}}]}'),
    ("POST", HOOKS, b'{"target":"https://example.com/\xe2\x82"}'),
])
async def test_invalid_utf8_in_a_body_is_a_400(
    ingest: tuple[Api, Ingest], method: str, path: str, body: bytes
) -> None:
    api, _ = ingest
    status, answer = await api.call(method, path, data=body,
                                    headers=auth(APP) | {"Content-Type": "application/json"})
    assert_error(status, answer, 400)


async def test_invalid_utf8_in_a_patch_body_is_a_400(ingest: tuple[Api, Ingest]) -> None:
    api, _ = ingest
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"})
    assert status == 201 and created is not None
    status, answer = await api.call(
        "PATCH", f"{HOOKS}/{created['id']}", data=b'{"description":"\xff"}',
        headers=auth(APP) | {"Content-Type": "application/json"})
    assert_error(status, answer, 400)


def _request(api: Api, path: str, headers: bytes, body: bytes) -> bytes:
    token = auth(APP)["Authorization"].encode()
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path.encode(), token, len(body), headers, body))


async def test_an_idempotency_key_that_is_not_utf8_is_a_400(ingest: tuple[Api, Ingest]) -> None:
    api, _ = ingest
    for path, body in ((EVENTS, b'{"type":"message.received"}'),
                       (EVENTS + "/batch", b'{"events":[{"type":"message.received"}]}')):
        answer = await _raw_request(api, _request(api, path, b"Idempotency-Key: k\xff\r\n", body))
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer
        error = msgspec.json.decode(payload)["error"]
        assert error["status"] == "INVALID_ARGUMENT" and "Idempotency-Key" in error["message"]


async def test_a_request_id_that_is_not_ascii_gets_an_answer(ingest: tuple[Api, Ingest]) -> None:
    """The X-Request-Id header was echoed as given: one that is not UTF-8 (or
    too long) broke the response."""
    api, _ = ingest
    for request_id in (b"r\xff", b"r" * 4000):
        answer = await _raw_request(api, _request(
            api, EVENTS, b"X-Request-Id: %s\r\n" % request_id, b'{"type":"message.received"}'))
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202"), answer[:300]
        assert request_id not in head
        assert msgspec.json.decode(payload)["id"].startswith("evt_")


# --- readers that diverged -------------------------------------------------------


async def test_a_record_in_a_foreign_partition_never_wins_in_any_reader(
    ingest: tuple[Api, Ingest], producer: AIOKafkaProducer
) -> None:
    """A producer that writes a webhook's id into another partition (a hostile
    one, or a tool that picks partitions) must not change what any reader holds:
    the reader that read the foreign partition first took it as the webhook
    (another target, even another app) and ignored the webhook's own records."""
    api, state = ingest
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"})
    assert status == 201 and created is not None
    current = state.view._log.current(created["id"])
    assert current is not None
    partitions = sorted(await producer.partitions_for(api.topics.webhooks))
    at = datetime.now(UTC)
    for other in (p for p in partitions if p != current.partition):
        hijack = Webhook(id=created["id"], app_id="app_evil", target="https://evil.example/h",
                         triggers=["*"], secret="whsec_ZXZpbA==", created_at=at, updated_at=at,
                         version=1000)
        await producer.send_and_wait(api.topics.webhooks, msgspec.json.encode(hijack),
                                     key=created["id"].encode(), partition=other)
    await asyncio.sleep(1)
    for _ in range(3):  # readers starting now, in whatever order they fetch
        reader = WebhooksView(api.bootstrap, api.topics.webhooks, keys=SECRET_KEYS)
        await reader.start()
        try:
            async with asyncio.timeout(20):
                await reader.ready.wait()
            got = reader.get(created["id"])
            assert got is not None
            assert (got.app_id, got.target, got.version) == (APP, "https://example.com/h", 1)
        finally:
            await reader.stop()
    status, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert status == 200 and fetched is not None and fetched["target"] == "https://example.com/h"
