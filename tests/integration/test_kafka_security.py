"""A locked Kafka (contract §9): a broker of its own that takes only SASL/SCRAM
logins (over TLS, and over plain TCP on a second port) and runs the standard
authorizer with nothing allowed but the ACLs of `services.common.kafka_acls`.
The four services, each logged in as its own principal, do all their work:
webhooks, events one by one, batches (transactions), idempotency keys, the
test event, an event's dead letter, retries through the tiers, a delivery's
dead letter, replay, the attempts log (the event log's table, its changelog
and eventlog.updates) and auto-disable; the broker denied none of their
requests, and no password is in their logs. A producer's credential writes `events` and is refused
everything else; a wrong password is refused."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from standardwebhooks.webhooks import Webhook as StandardWebhook

from devtools.acls import grant_all
from devtools.broker import Broker, Lock, free_port
from devtools.processes import Stack
from services.common.config import KafkaSettings
from services.common.kafka_acls import (
    DELIVERER,
    EVENTLOG,
    INGEST,
    PRODUCER,
    ROLES,
    ROUTER,
    user_name,
)
from services.common.kafka_clients import client_options
from services.common.topics import Topics, ensure_topics
from tests.conftest import Receiver, auth, consumer_records, make_stack
from tests.integration.client import Client

APP = "app_locked"
PREFIX = "locked."
# The event log first: ingest is told where it is.
SERVICES = {"eventlog": EVENTLOG, "ingest": INGEST, "router": ROUTER, "deliverer": DELIVERER}
DENIED = re.compile(r"Principal = User:(\S+) is Denied [Oo]peration = (\w+) from host = \S+ "
                    r"on resource = (\w+):(\w+):(\S+)")


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    lock = Lock({user_name(role, PREFIX): secrets.token_urlsafe(18) for role in ROLES})
    broker = Broker(tmp_path_factory.mktemp("locked-kafka"), free_port(), free_port(), lock=lock)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
async def topics(locked: Broker) -> Topics:
    """Created by the administrator (no service may create topics), then every
    role's ACLs granted."""
    admin = locked.kafka_settings(PREFIX)
    topics = Topics(PREFIX, retry_delays=(1, 2))  # the tests' schedule, 1s,2s
    await ensure_topics(admin, topics.specs(), partitions=3)
    await grant_all(admin, topics)
    return topics


@pytest.fixture(scope="module")
async def stacks(locked: Broker, topics: Topics,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Stack]]:
    """The event log, ingest, router and deliverer, each logged in as its own
    principal over SASL_SSL."""
    log_dir = tmp_path_factory.mktemp("locked-stack")
    stacks: dict[str, Stack] = {}
    for service, role in SERVICES.items():
        where = {"HOOKBUS_EVENTLOG_URLS": ",".join(stacks["eventlog"].eventlog_urls)} \
            if service == "ingest" else {}
        stacks[service] = make_stack(locked.bootstrap, topics.prefix, log_dir,
                                     **locked.service_env(user_name(role, PREFIX)), **where)
        stacks[service].start(service)
    try:
        for stack in stacks.values():
            await stack.wait_ready()
        yield stacks
    finally:
        for stack in stacks.values():
            stack.stop()


@pytest.fixture
async def client(stacks: dict[str, Stack]) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, stacks["ingest"].ingest_url, APP)


def denials(broker: Broker) -> list[tuple[str, ...]]:
    """(user, operation, resource type, pattern type, name) of every request the
    authorizer denied so far."""
    text = "".join(path.read_text(errors="replace")
                   for path in sorted((broker.data_dir / "logs").glob("server.log*")))
    return DENIED.findall(text)


def failing_until(healthy: asyncio.Event):  # noqa: ANN201
    async def respond(_: web.Request, n: int) -> web.Response:
        return web.Response(status=204 if healthy.is_set() else 500)
    return respond


async def gone(_: web.Request, n: int) -> web.Response:
    return web.Response(status=410)


async def test_the_services_work_under_their_own_acls(
    locked: Broker, topics: Topics, stacks: dict[str, Stack], client: Client, receiver: Receiver,
) -> None:
    hook = await client.create_webhook(target=receiver.url("/ok"), triggers=["*"])
    healthy = asyncio.Event()
    receiver.respond("/down", failing_until(healthy))
    down = await client.create_webhook(target=receiver.url("/down"),
                                       triggers=["payment.succeeded"])
    receiver.respond("/gone", gone)
    doomed = await client.create_webhook(target=receiver.url("/gone"),
                                         triggers=["contact.created"])
    await asyncio.sleep(1.5)  # a new webhook is in force within a second

    # One event through ingest, signed on arrival.
    first = await client.publish("message.received", text="hello")
    got = await receiver.wait_for("/ok", first)
    payload = StandardWebhook(hook["secret"]).verify(got.body, got.headers)
    assert payload["id"] == first and payload["data"] == {"text": "hello"}

    # A batch (ingest's transactional ids) and an idempotency key (its topic).
    batch = await client.call("POST", "/events/batch", 202, json={"events": [
        {"type": "conversation.read"}, {"type": "message.sent"}]})
    keyed = []
    for _ in range(2):
        async with client.http.post(f"{client.base}/v1/apps/{APP}/events",
                                    json={"type": "message.received"},
                                    headers={**auth(APP), "Idempotency-Key": "k-1"}) as response:
            assert response.status == 202, await response.text()
            keyed.append((await response.json())["id"])
    assert keyed[0] == keyed[1]
    for event_id in [*batch["ids"], keyed[0]]:
        await receiver.wait_for("/ok", event_id)

    # The webhook test event (ingest writes `deliveries`).
    tested = await client.call("POST", f"/webhooks/{hook['id']}/test", 202)
    await receiver.wait_for("/ok", tested["id"])
    # The event log's detail of each: the envelope read back from `events`, and
    # from `deliveries` for the test event.
    for event_id in (first, tested["id"]):
        async with asyncio.timeout(30):
            while True:
                async with client.http.get(f"{client.base}/v1/apps/{APP}/events/{event_id}",
                                           headers=auth(APP)) as response:
                    if response.status == 200:
                        assert (await response.json())["event"]["id"] == event_id
                        break
                await asyncio.sleep(0.3)

    # An event written straight to `events` with the producers' credential.
    producer = AIOKafkaProducer(**client_options(locked.kafka_settings(
        PREFIX, user_name(PRODUCER, PREFIX))), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        direct = {"id": "evt_direct_1", "type": "message.received", "app_id": APP,
                  "created_at": "2026-11-22T18:15:00Z", "data": {}}
        await producer.send_and_wait(topics.events, msgspec.json.encode(direct),
                                     key=APP.encode())
        await producer.send_and_wait(topics.events, b"not json", key=b"poison")
    finally:
        await producer.stop()
    await receiver.wait_for("/ok", "evt_direct_1")
    async with asyncio.timeout(30):  # the router dead-letters what it cannot route
        while not [r for r in await consumer_records(locked.kafka_settings(PREFIX),
                                                     topics.events_dlq) if r.key == b"poison"]:
            await asyncio.sleep(0.3)

    # Retries through the tiers, a dead letter, the attempts log, replay.
    paid = await client.publish("payment.succeeded")
    await receiver.wait_count("/down", 3)
    async with asyncio.timeout(30):  # the event log files the attempts, the dead one last
        while not [a for a in (await client.call(
                "GET", f"/webhooks/{down['id']}/attempts", 200))["attempts"]
                   if a["result"] == "dead"]:
            await asyncio.sleep(0.2)
    healthy.set()
    async with asyncio.timeout(30):  # a replay job (the event log reads deliveries.dlq)
        while True:
            job = await client.call("POST", f"/webhooks/{down['id']}/replay", 202, json={})
            while job["state"] == "running":
                await asyncio.sleep(0.3)
                job = await client.call("GET", f"/webhooks/{down['id']}/replay/{job['id']}", 200)
            assert job["state"] == "done", job
            if job["replayed"] >= 1:
                break
            await asyncio.sleep(0.5)  # the dead letter may not be written yet
    replayed = await receiver.wait_count("/down", 4)
    assert replayed[-1].headers["webhook-id"] == paid

    # A 410 disables the webhook (the deliverer writes `webhooks`).
    await client.publish("contact.created")
    async with asyncio.timeout(20):
        while (await client.call("GET", f"/webhooks/{doomed['id']}", 200))["enabled"]:
            await asyncio.sleep(0.2)

    services = {user_name(role, PREFIX) for role in SERVICES.values()}
    assert [d for d in denials(locked) if d[0] in services] == []
    passwords = set(locked.lock.users.values())
    for stack in stacks.values():
        codes = stack.stop()
        assert all(code == 0 for code in codes.values()), codes
        for service in stack.services.values():
            assert not [p for p in passwords if p in service.log()]  # never logged


async def test_a_producer_may_write_events_and_nothing_else(
    locked: Broker, topics: Topics,
) -> None:
    for tls in (True, False):  # SASL_SSL and SASL_PLAINTEXT
        kafka = locked.kafka_settings(PREFIX, user_name(PRODUCER, PREFIX), tls=tls)
        producer = AIOKafkaProducer(**client_options(kafka), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.events, b"{}", key=b"app_x")
            for topic in (topics.webhooks, topics.deliveries, topics.deliveries_dlq,
                          topics.events_dlq, topics.attempts, topics.idempotency,
                          topics.retry_tiers[1]):
                with pytest.raises(TopicAuthorizationFailedError):
                    await producer.send_and_wait(topic, b"{}", key=b"wh_forged")
        finally:
            await producer.stop()

    kafka = locked.kafka_settings(PREFIX, user_name(PRODUCER, PREFIX))
    for topic in (topics.webhooks, topics.deliveries, topics.events):  # not even its own
        with pytest.raises(TopicAuthorizationFailedError):
            await read(kafka, topic)
    with pytest.raises((GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
        await read(kafka, topics.events, group_id=f"{PREFIX}router")


async def read(kafka: KafkaSettings, topic: str, group_id: str | None = None) -> None:
    """Fetch from `topic` (in `group_id`), raising what the broker answers."""
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), group_id=group_id,
                                auto_offset_reset="earliest")
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


async def test_a_wrong_password_is_refused(locked: Broker, topics: Topics,
                                           caplog: pytest.LogCaptureFixture) -> None:
    user = user_name(PRODUCER, PREFIX)
    for tls in (True, False):
        caplog.clear()
        kafka = locked.kafka_settings(PREFIX, user, tls=tls,
                                      password="not-" + locked.lock.users[user])
        producer = AIOKafkaProducer(**client_options(kafka), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):  # aiokafka: "Unable to bootstrap"
            await producer.start()
        await producer.stop()
        assert "SaslAuthenticationFailed" in caplog.text  # why, as the broker answered


async def test_a_service_with_another_principals_credential_stops(
    locked: Broker, topics: Topics, tmp_path: Path,
) -> None:
    """The router logged in as the producer may not read `webhooks`: it exits
    and says why, rather than wait in a pod that looks alive."""
    stack = make_stack(locked.bootstrap, topics.prefix, tmp_path,
                       **locked.service_env(user_name(PRODUCER, PREFIX)))
    router = stack.start("router")
    try:
        assert await asyncio.to_thread(router.process.wait, 60) != 0
        assert "TopicAuthorizationFailedError" in router.log()
        assert any(d[0] == user_name(PRODUCER, PREFIX) and d[4] == topics.webhooks
                   for d in denials(locked))
    finally:
        stack.stop()
