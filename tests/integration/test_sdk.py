"""The hookbus SDK against real servers (issue 14 item 5): retries against a
real local HTTP server answering 503/429, the same Idempotency-Key on every
try; then, against the real stack, publishing through the API and straight to
Kafka (the publisher's record routed and delivered like ingest's), batches, and
real deliveries verified by the receiver helper in an aiohttp handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web

from devtools.broker import Broker, free_port
from devtools.processes import Stack
from hookbus.aio import AsyncClient
from hookbus.client import Client
from hookbus.errors import HookbusError
from hookbus.publisher import KafkaPublisher
from hookbus.receivers import verify_aiohttp
from hookbus.retry_policy import Backoff
from hookbus.signatures import Verifier
from services.common.topics import Topics
from tests.conftest import consumer_records, token
from tests.integration.conftest import serving

APP = "app_sdk"
FAST = Backoff(attempts=4, base=0.05, cap=0.2)


class FlakyApi:
    """A real HTTP server that answers each POST with the next status of `plan`
    (a Retry-After of 0 on 429s), then 202, and records what it got."""

    def __init__(self, *plan: int) -> None:
        self.plan = list(plan)
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, dict(request.headers), await request.read()))
        n = len(self.seen)
        if n <= len(self.plan):
            status = self.plan[n - 1]
            return web.json_response(
                {"error": {"code": status, "status": "UNAVAILABLE", "message": "retry later",
                           "details": []}}, status=status,
                headers={"Retry-After": "0"} if status == 429 else None)
        if request.path.endswith("/batch"):
            count = len(msgspec.json.decode(self.seen[-1][2])["events"])
            return web.json_response({"ids": [f"evt_{n}_{i}" for i in range(count)]}, status=202)
        if request.path.endswith("/webhooks"):
            return web.json_response({"id": "wh_1"}, status=201)
        return web.json_response({"id": "evt_1"}, status=202)

    def keys(self) -> list[str | None]:
        return [headers.get("Idempotency-Key") for _, headers, _ in self.seen]


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyApi]:
    api = FlakyApi()
    app = web.Application()
    app.router.add_post("/{tail:.*}", api.handle)
    async with serving(app, api.port):
        yield api


async def test_publishes_are_retried_on_503_and_429_with_the_same_key(flaky: FlakyApi) -> None:
    url = f"http://127.0.0.1:{flaky.port}"
    flaky.plan = [503, 429, 503]
    async with AsyncClient(url, "t", APP, backoff=FAST) as client:
        assert await client.publish("message.received", {"n": 1}, idempotency_key="k-1") == "evt_1"
    assert flaky.keys() == ["k-1"] * 4
    assert len({body for _, _, body in flaky.seen}) == 1  # the same request every time
    assert flaky.seen[0][1]["Authorization"] == "Bearer t"

    # The sync client, from a thread; a batch too; then one 503 too many.
    flaky.seen, flaky.plan = [], [503]
    sync = Client(url, "t", APP, backoff=FAST)
    events = [{"type": "message.received", "data": {"n": n}} for n in range(5)]
    ids = await asyncio.to_thread(sync.publish_many, events, idempotency_key="b", batch_size=2)
    assert len(ids) == 5
    assert flaky.keys() == ["b.0", "b.0", "b.1", "b.2"]
    flaky.seen, flaky.plan = [], [503] * 4
    with pytest.raises(HookbusError) as raised:
        await asyncio.to_thread(sync.publish, "message.received", idempotency_key="k-2")
    assert raised.value.code == 503 and raised.value.message == "retry later"
    assert flaky.keys() == ["k-2"] * 4

    # A webhook write is not repeated: its 503 may mean "written, not confirmed".
    flaky.seen, flaky.plan = [], [503]
    with pytest.raises(HookbusError):
        await asyncio.to_thread(sync.create_webhook, "https://example.com/hook")
    assert len(flaky.seen) == 1


class VerifyingEndpoint:
    """A receiver's own aiohttp app, written as the README shows: two lines verify."""

    def __init__(self) -> None:
        self.verifiers: dict[str, Verifier] = {}
        self.payloads: dict[str, list[dict]] = {}
        self.refused = 0
        self.port = free_port()
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["name"]
        try:
            payload = await verify_aiohttp(request, self.verifiers[path])
        except web.HTTPBadRequest:
            self.refused += 1
            raise
        self.payloads.setdefault(path, []).append(payload)
        self.changed.set()
        return web.Response(status=204)

    async def wait(self, path: str, event_id: str, timeout: float = 30) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                found = [p for p in self.payloads.get(path, []) if p["id"] == event_id]
                if found:
                    return found[0]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def endpoint() -> AsyncIterator[VerifyingEndpoint]:
    receiving = VerifyingEndpoint()
    app = web.Application()
    app.router.add_post("/{name}", receiving.handle)
    async with serving(app, receiving.port):
        yield receiving


async def test_sdk_against_the_stack(stack: Stack, kafka: Broker, topics: Topics,
                                     endpoint: VerifyingEndpoint) -> None:
    base = f"http://127.0.0.1:{endpoint.port}"
    async with AsyncClient(stack.ingest_url, token(APP), APP) as client, \
            KafkaPublisher(kafka.bootstrap, topic_prefix=topics.prefix) as publisher:
        v1 = await client.create_webhook(base + "/v1", ["message.received"])
        v1a = await client.create_webhook(base + "/v1a", ["message.received"],
                                          signature_scheme="v1a")
        endpoint.verifiers = {"v1": Verifier(v1["secret"]), "v1a": Verifier(v1a["public_key"])}

        by_api = await client.publish("message.received", {"via": "api"}, idempotency_key="o-1")
        assert await client.publish("message.received", {"via": "api"},
                                    idempotency_key="o-1") == by_api
        by_kafka = (await publisher.publish(APP, "message.received", {"via": "kafka"})).id
        batch = [{"type": "message.received", "data": {"n": n}} for n in range(3)]
        ids = await client.publish_many(batch, idempotency_key="b-1", batch_size=2)
        assert len(set(ids)) == 3
        assert await client.publish_many(batch, idempotency_key="b-1", batch_size=2) == ids
        with pytest.raises(ValueError, match="unknown event type"):
            await publisher.publish(APP, "no.such.type")
        with pytest.raises(HookbusError) as raised:
            await client.publish("no.such.type")
        assert raised.value.code == 400 and raised.value.details[0].field == "type"

        # Every event reaches both endpoints, each delivery verified by the helper.
        for event_id in (by_api, by_kafka, *ids):
            for path in ("v1", "v1a"):
                payload = await endpoint.wait(path, event_id)
                assert payload["app_id"] == APP and payload["type"] == "message.received"
        assert (await endpoint.wait("v1", by_kafka))["data"] == {"via": "kafka"}
        assert endpoint.refused == 0

    # The publisher's record is one ingest could have written: same key, same
    # partition, no headers, the same fields in the same order.
    written = {msgspec.json.decode(r.value)["id"]: r
               for r in await consumer_records(kafka.bootstrap, topics.events)}
    api_record, kafka_record = written[by_api], written[by_kafka]
    assert kafka_record.key == api_record.key == APP.encode()
    assert kafka_record.partition == api_record.partition
    assert list(kafka_record.headers) == list(api_record.headers) == []
    assert list(msgspec.json.decode(kafka_record.value)) == \
        list(msgspec.json.decode(api_record.value)) == ["id", "type", "app_id", "created_at", "data"]
