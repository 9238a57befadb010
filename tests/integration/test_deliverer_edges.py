"""The deliverer at the edges of contract §7 (issue 9 items 3, 4, 5 and 7), on
the real broker with the services as processes: webhooks the deliverer does not
know yet, deleted or owned by another app; null records; a dead endpoint behind
an open breaker; a rebalance while attempts are under way; an oversized OAuth
token response. The stack's retry schedule is `1s,2s`: three attempts in all."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from devtools.processes import Stack
from schemas.attempts import Attempt
from schemas.deliveries import DeliveryTask
from schemas.webhooks import ClientCredentials, Webhook
from services.common.topics import Topics
from services.deliverer.oauth import MAX_TOKEN_RESPONSE, TokenCache, TokenError
from tests.conftest import PARTITIONS, Receiver, records, until
from tests.integration.client import Client
from tests.integration.test_fairness import deliveries_by_outcome, publish_batch

APP = "app_edges"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, stack.ingest_url, APP)




def a_task(webhook_id: str, event_id: str, app_id: str = APP) -> bytes:
    body = msgspec.json.encode({"id": event_id, "type": "message.received", "app_id": app_id,
                                "created_at": "2026-11-22T18:15:00Z", "data": {}})
    return msgspec.json.encode(DeliveryTask(
        webhook_id=webhook_id, app_id=app_id, event_id=event_id, event_type="message.received",
        event_created_at=datetime.now(UTC), body=msgspec.Raw(body)))


async def dead_letters(stack: Stack, topics: Topics, count: int, timeout: float = 30) -> list:
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    async with asyncio.timeout(timeout):
        while len(found := await records(bootstrap, topics.deliveries_dlq)) < count:
            await asyncio.sleep(0.3)
    return found


async def attempt_records(stack: Stack, topics: Topics) -> list[Attempt]:
    found = await records(stack.env["HOOKBUS_KAFKA_BOOTSTRAP"], topics.attempts)
    return [msgspec.json.decode(value, type=Attempt) for _, value in found if value]


def assert_no_crash(stack: Stack, *names: str) -> None:
    for name in names or ("deliverer",):
        log = stack.services[name].log()
        assert "Traceback" not in log and "KeyError" not in log, log[-3000:]


async def test_a_task_read_before_its_webhook_is_delivered(
    client: Client, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    """A task the deliverer reads before its view has the webhook (a router or
    ingest whose view caught up first): deferred, not dropped, and delivered once
    the webhook is known. Then the contract's case: `POST …/test` right after
    the create."""
    # Known 0.5s after the task is read (the deliverer holds it in memory), and
    # 3s after (by then it waits on a retry tier).
    for path, lag in (("/soon", 0.5), ("/late", 3.0)):
        webhook_id = f"wh_{path[1:]}{uuid.uuid4().hex[:8]}"
        await producer.send_and_wait(topics.deliveries, a_task(webhook_id, f"evt_{path[1:]}"),
                                     key=webhook_id.encode())
        await asyncio.sleep(lag)
        now = datetime.now(UTC)
        webhook = Webhook(id=webhook_id, app_id=APP, target=receiver.url(path), triggers=["*"],
                          secret="whsec_c2VjcmV0LXNpZ25pbmcta2V5", created_at=now,
                          updated_at=now, version=1)
        await producer.send_and_wait(topics.webhooks, msgspec.json.encode(webhook),
                                     key=webhook_id.encode())
        await receiver.wait_for(path, f"evt_{path[1:]}", timeout=20)

    tested = []
    for n in range(5):
        hook = await client.create_webhook(target=receiver.url(f"/new/{n}"), triggers=["*"])
        tested.append((n, (await client.call("POST", f"/webhooks/{hook['id']}/test", 202))["id"]))
    for n, event in tested:
        got = await receiver.wait_for(f"/new/{n}", event, timeout=30)
        assert b'"type":"webhook.test"' in got.body
    assert_no_crash(stack)


@pytest.mark.stack_env(HOOKBUS_UNKNOWN_WEBHOOK_GRACE="3s")
async def test_unknown_webhooks_are_deferred_then_dead_lettered_deleted_ones_dropped(
    client: Client, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    known = await client.create_webhook(target=receiver.url("/known"), triggers=["*"])
    doomed = await client.create_webhook(target=receiver.url("/doomed"), triggers=["*"])
    await client.call("DELETE", f"/webhooks/{doomed['id']}", 204)
    await asyncio.sleep(1.2)
    written_at = time.time()
    await producer.send_and_wait(topics.deliveries, a_task("wh_nobody", "evt_unknown"),
                                 key=b"wh_nobody")
    await producer.send_and_wait(topics.deliveries, a_task(doomed["id"], "evt_deleted"),
                                 key=doomed["id"].encode())
    # A task naming another app's webhook: never signed, never sent (contract §9).
    await producer.send_and_wait(topics.deliveries,
                                 a_task(known["id"], "evt_forged", app_id="app_forger"),
                                 key=known["id"].encode())
    letters = {msgspec.json.decode(value, type=DeliveryTask).event_id:
               msgspec.json.decode(value, type=DeliveryTask)
               for _, value in await dead_letters(stack, topics, 2)}
    assert set(letters) == {"evt_unknown", "evt_forged"}
    assert letters["evt_unknown"].last_error == "unknown webhook"
    assert (letters["evt_unknown"].attempt, letters["evt_unknown"].tried) == (1, False)
    assert letters["evt_forged"].last_error.startswith(f"forged: webhook {known['id']}")
    assert time.time() - written_at >= 3  # deferred for the grace, not dropped at once

    async def ended() -> list[Attempt]:  # the dead letters' records, written beside them
        log = [a for a in await attempt_records(stack, topics)
               if a.event_id in ("evt_unknown", "evt_forged")]
        dead = sorted(a.event_id for a in log if a.result == "dead")
        return log if dead == ["evt_forged", "evt_unknown"] else []

    await until(ended, timeout=10)
    log = await ended()
    deferrals = [a for a in log if a.event_id == "evt_unknown" and a.result != "dead"]
    assert deferrals and all(a.result == "deferred" and "unknown webhook" in (a.error or "")
                             for a in deferrals)
    # How each series ended is in the attempts log: the dead letters' reasons.
    dead = {a.event_id: a for a in log if a.result == "dead"}
    assert dead["evt_unknown"].error == "unknown webhook"
    assert dead["evt_forged"].error == letters["evt_forged"].last_error
    assert [a.result for a in log if a.event_id == "evt_forged"] == ["dead"]  # never attempted
    later = await client.publish("message.received")
    await receiver.wait_for("/known", later)
    assert [r.headers["webhook-id"] for r in receiver.received] == [later]
    assert (await deliveries_by_outcome(client.http, stack)).get("dropped", 0) >= 1
    assert_no_crash(stack)


async def test_bad_records_are_dead_lettered_and_delivery_goes_on(
    client: Client, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    hook = await client.create_webhook(target=receiver.url("/h"), triggers=["*"])
    await asyncio.sleep(1.2)
    tier = topics.retry_tiers[1.0]
    await producer.send_and_wait(topics.deliveries, None, key=b"wh_null_1")
    await producer.send_and_wait(tier, None, key=b"wh_null_2")
    await producer.send_and_wait(tier, b"[1, 2", key=b"wh_broken")
    # msgspec raises UnicodeDecodeError, not a DecodeError, for invalid UTF-8.
    await producer.send_and_wait(topics.deliveries, b'{"webhook_id": "\xff\xfe"}',
                                 key=b"wh_utf8")
    letters = await dead_letters(stack, topics, 4)
    assert sorted(letters, key=lambda kv: kv[0]) == \
        [(b"wh_broken", b"[1, 2"), (b"wh_null_1", None), (b"wh_null_2", None),
         (b"wh_utf8", b'{"webhook_id": "\xff\xfe"}')]
    # A null dead letter under a real webhook's key: a replay skips it.
    await producer.send_and_wait(topics.deliveries_dlq, None, key=hook["id"].encode())
    replayed = await client.replay(hook["id"])
    assert replayed["replayed"] == 0 and replayed["scanned"] >= 1
    # A task written by hand whose event time has no offset: delivered all the same.
    naive = msgspec.json.decode(a_task(hook["id"], "evt_naive"))
    naive["event_created_at"] = "2026-11-22T18:15:00"
    await producer.send_and_wait(topics.deliveries, msgspec.json.encode(naive),
                                 key=hook["id"].encode())
    await receiver.wait_for("/h", "evt_naive")
    event = await client.publish("message.received")
    await receiver.wait_for("/h", event)
    assert stack.services["deliverer"].alive
    assert (await deliveries_by_outcome(client.http, stack)).get("dead", 0) == 4
    assert_no_crash(stack)


async def test_a_dead_endpoint_gets_every_scheduled_attempt_and_the_log_shows_deferrals(
    client: Client, stack: Stack, topics: Topics, receiver: Receiver
) -> None:
    """Ten events to an endpoint that always fails: its breaker opens after five
    failures and defers the retries, yet each event gets all three attempts of
    the schedule before its dead letter, and the attempts log says why it waited."""
    async def down(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500, text="down")

    receiver.respond("/down", down)
    hook = await client.create_webhook(target=receiver.url("/down"), triggers=["*"])
    await asyncio.sleep(1.2)
    events = await publish_batch(client, 10)
    letters = await dead_letters(stack, topics, 10, timeout=60)
    await asyncio.sleep(1)  # nothing comes after the dead letter
    assert sorted(msgspec.json.decode(v, type=DeliveryTask).event_id for _, v in letters) == \
        sorted(events)
    arrivals = Counter(r.headers["webhook-id"] for r in receiver.on("/down"))
    assert arrivals == {event: 3 for event in events}

    log = [a for a in await attempt_records(stack, topics) if a.webhook_id == hook["id"]]
    for event in events:
        tried = sorted(a.attempt for a in log if a.event_id == event and a.result == "failure")
        assert tried == [1, 2, 3], event
    deferred = [a for a in log if a.result == "deferred"]
    assert deferred, "the breaker deferred nothing"
    assert all("circuit open" in (a.error or "") and a.retry_at for a in deferred)
    assert_no_crash(stack)


async def test_a_rebalance_while_endpoints_are_slow_loses_nothing(
    client: Client, stack: Stack, receiver: Receiver
) -> None:
    """A second deliverer joins while attempts to slow endpoints are under way
    and queued on every partition, then the first is stopped (a rolling update):
    attempts that outlive the revocation neither crash the deliverer nor are
    committed by it; every event is delivered; duplicates are allowed."""
    first_came = asyncio.Event()

    async def slow(_: web.Request, n: int) -> web.Response:
        first_came.set()
        await asyncio.sleep(4)  # three waves of 20 outlast the 5s attempt timeout
        return web.Response(status=204)

    # An app's webhooks share its partition: one slow app on every partition.
    partitions = list(range(PARTITIONS))
    paths, apps, covered = [], [], set()
    for n in range(100):
        app = f"app_roll{n}"
        partition = DefaultPartitioner()(app.encode(), partitions, partitions)
        if partition in covered:
            continue
        covered.add(partition)
        tenant = Client(client.http, client.base, app)
        path = f"/slow/{partition}"
        receiver.respond(path, slow)
        await tenant.create_webhook(target=receiver.url(path), triggers=["*"])
        paths.append(path)
        apps.append(tenant)
        if covered == set(partitions):
            break
    await asyncio.sleep(1.2)
    events = {path: set(await publish_batch(tenant, 60)) for path, tenant in zip(paths, apps)}
    await asyncio.wait_for(first_came.wait(), 30)
    stack.start("deliverer", name="deliverer-2")
    await stack.wait_instance_ready("deliverer-2", exited_fails=True)
    await asyncio.sleep(6)  # the first deliverer's revocation wait is over
    assert await asyncio.to_thread(stack.terminate, "deliverer") == 0
    async with asyncio.timeout(120):
        while any({r.headers["webhook-id"] for r in receiver.on(path)} != events[path]
                  for path in paths):
            await asyncio.sleep(0.2)
    assert stack.services["deliverer-2"].alive
    duplicates = len(receiver.received) - 60 * len(paths)
    print(f"60 events to each of {len(paths)} slow endpoints across two rebalances: "
          f"{duplicates} duplicate deliveries")
    assert_no_crash(stack, "deliverer", "deliverer-2")


async def test_the_token_response_is_read_with_a_size_limit(receiver: Receiver) -> None:
    async def huge(_: web.Request, n: int) -> web.Response:
        return web.json_response({"access_token": "x" * (MAX_TOKEN_RESPONSE + 1)})

    async def endless(request: web.Request, n: int) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to go by
        await response.prepare(request)
        await response.write(b'{"access_token": "')
        for _ in range(4 * MAX_TOKEN_RESPONSE // 1024):
            await response.write(b"x" * 1024)
        return response

    async def fine(_: web.Request, n: int) -> web.Response:
        return web.json_response({"access_token": "tok", "expires_in": 60})

    for path, responder in (("/huge", huge), ("/endless", endless), ("/fine", fine)):
        receiver.respond(path, responder)
    async with aiohttp.ClientSession() as session:
        tokens = TokenCache(session)
        for path in ("/huge", "/endless"):
            creds = ClientCredentials(client_id="id", client_secret="s", endpoint=receiver.url(path))
            with pytest.raises(TokenError, match="more than 65536 bytes"):
                await tokens.token(creds)
        creds = ClientCredentials(client_id="id", client_secret="s", endpoint=receiver.url("/fine"))
        assert await tokens.token(creds) == "tok"


async def test_a_task_for_a_deleted_webhook_is_dropped_and_recorded(
    client: Client, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    """Nothing is sent, nothing retried, and an attempt record says so, with the
    task's app and its event's time (what the event log files it under)."""
    hook = await client.create_webhook(target=receiver.url("/deleted"))
    await client.call("DELETE", f"/webhooks/{hook['id']}", 204)
    await asyncio.sleep(1.2)  # in force within a second (contract §6)
    await producer.send_and_wait(topics.deliveries, a_task(hook["id"], "evt_dropped"),
                                 key=hook["id"].encode())
    async with asyncio.timeout(30):
        while not (dropped := [a for a in await attempt_records(stack, topics)
                               if a.event_id == "evt_dropped"]):
            await asyncio.sleep(0.3)
    (record,) = dropped
    assert (record.result, record.error, record.app_id) == \
        ("dropped", "the webhook was deleted", APP)
    assert record.event_created_at is not None
    assert receiver.on("/deleted") == []
    assert_no_crash(stack)
