"""A hostile review of the deliverer, on the real broker with the services as
processes: a tenant whose endpoints answer in ways that crashed the deliverer,
one that trips another app's breaker, a producer that writes tasks no
deliverer wrote. The stack's retry schedule is `1s,2s`. Each test failed
before its fix."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from devtools.processes import Stack
from services.common.topics import Topics
from tests.conftest import Receiver
from tests.integration.client import Client
from tests.integration.test_deliverer_edges import a_task, assert_no_crash, attempt_records




async def test_a_hostile_endpoint_cannot_stop_the_deliverer(
    http: aiohttp.ClientSession, stack: Stack, receiver: Receiver
) -> None:
    """A 429 with `Retry-After: ²` (`isdigit`, but no float), an OAuth token with a
    CRLF in it (aiohttp refuses the header: ValueError) and a token answer that
    is not UTF-8 (msgspec raises UnicodeDecodeError) each raised out of the
    attempt: the deliverer stopped, and met the same task after every restart.
    They are failed attempts of that tenant; everyone else is delivered."""
    async def superscript(_: web.Request, n: int) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "²"})

    async def crlf_token(_: web.Request, n: int) -> web.Response:
        return web.json_response({"access_token": "tok\r\nX-Injected: 1", "expires_in": 60})

    async def latin1_token(_: web.Request, n: int) -> web.Response:
        return web.Response(body=b'{"access_token": "\xff\xfe"}', content_type="application/json")

    for path, responder in (("/ra", superscript), ("/token/crlf", crlf_token),
                            ("/token/latin1", latin1_token)):
        receiver.respond(path, responder)
    evil = Client(http, stack.ingest_url, "app_evil")
    await evil.create_webhook(target=receiver.url("/ra"), triggers=["*"])
    for kind in ("crlf", "latin1"):
        await evil.create_webhook(
            target=receiver.url(f"/oauth/{kind}"), triggers=["*"],
            client_credentials={"client_id": "id", "client_secret": "secret",
                                "endpoint": receiver.url(f"/token/{kind}")})
    victim = Client(http, stack.ingest_url, "app_victim")
    await victim.create_webhook(target=receiver.url("/victim"), triggers=["*"])
    await asyncio.sleep(1.2)
    await evil.publish("message.received")
    await receiver.wait_count("/ra", 2)  # the first 429 came and went: a retry follows
    await receiver.wait_count("/token/crlf", 2)
    await receiver.wait_count("/token/latin1", 2)
    event = await victim.publish("message.received")
    await receiver.wait_for("/victim", event)
    assert stack.services["deliverer"].alive
    assert not receiver.on("/oauth/crlf") and not receiver.on("/oauth/latin1")
    assert_no_crash(stack)


async def test_a_task_with_a_negative_attempt_cannot_stop_the_deliverer(
    http: aiohttp.ClientSession, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    """`schedule[attempt - 1]` with attempt -100 raised IndexError after the
    attempt failed: the deliverer stopped and crash-looped on the record. A
    record whose attempt is below 1 is no task: it is dead-lettered as it is."""
    async def down(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500)

    receiver.respond("/down", down)
    tenant = Client(http, stack.ingest_url, "app_neg")
    hook = await tenant.create_webhook(target=receiver.url("/down"), triggers=["*"])
    other = Client(http, stack.ingest_url, "app_neg_other")
    await other.create_webhook(target=receiver.url("/ok"), triggers=["*"])
    await asyncio.sleep(1.2)
    forged = msgspec.json.decode(a_task(hook["id"], "evt_negative", app_id="app_neg"))
    forged["attempt"] = -100
    await producer.send_and_wait(topics.deliveries, msgspec.json.encode(forged),
                                 key=hook["id"].encode())
    await asyncio.sleep(2)
    event = await other.publish("message.received")
    await receiver.wait_for("/ok", event)
    assert stack.services["deliverer"].alive
    assert not any(r.headers.get("webhook-id") == "evt_negative" for r in receiver.on("/down"))
    assert_no_crash(stack)


async def test_another_apps_failures_on_the_same_endpoint_never_open_its_breaker(
    http: aiohttp.ClientSession, stack: Stack, topics: Topics, receiver: Receiver
) -> None:
    """The breaker counted by endpoint URL without its query, over every app: a
    tenant pointing webhooks at another customer's endpoint (a shared SaaS
    receiver, a public URL), whose requests it refuses, opened that breaker and
    got the other app's tasks deferred as long as it kept failing."""
    async def shared(request: web.Request, n: int) -> web.Response:
        return web.Response(status=401 if "tenant" in request.query else 204)

    receiver.respond("/shared", shared)
    evil = Client(http, stack.ingest_url, "app_tripper")
    await evil.create_webhook(target=receiver.url("/shared?tenant=evil"), triggers=["*"])
    victim = Client(http, stack.ingest_url, "app_tripped")
    hook = await victim.create_webhook(target=receiver.url("/shared"), triggers=["*"])
    await asyncio.sleep(1.2)
    for _ in range(8):
        await evil.publish("message.received")
    async with asyncio.timeout(30):  # enough failures to open a breaker
        while len(receiver.on("/shared")) < 8:  # all the tenant's, so far
            await asyncio.sleep(0.05)
    events = [await victim.publish("message.received") for _ in range(3)]
    for event in events:
        await receiver.wait_for("/shared", event)
    await asyncio.sleep(1)
    log = [a for a in await attempt_records(stack, topics) if a.webhook_id == hook["id"]]
    assert [a for a in log if a.result == "deferred"] == []
    assert sorted(a.event_id for a in log if a.result == "success") == sorted(events)
    assert_no_crash(stack)


async def test_a_tier_record_due_in_a_thousand_years_never_holds_up_its_partition(
    http: aiohttp.ClientSession, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    """A record on a retry tier is due exactly the tier's delay after it was
    written. One that claims a far later `due_at` paused its tier partition
    until then: every retry behind it, of every app, waited for ever."""
    async def flaky(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500 if n == 1 else 204)

    receiver.respond("/flaky", flaky)
    victim = Client(http, stack.ingest_url, "app_behind")
    hook = await victim.create_webhook(target=receiver.url("/flaky"), triggers=["*"])
    await asyncio.sleep(1.2)
    bogus = msgspec.json.decode(a_task(f"wh_bogus{uuid.uuid4().hex[:6]}", "evt_bogus"))
    bogus["due_at"] = time.time() + 3e10
    # Keyed by the victim's webhook id: the partition its retries are written to.
    await producer.send_and_wait(topics.retry_tiers[1.0], msgspec.json.encode(bogus),
                                 key=hook["id"].encode())
    await asyncio.sleep(1)
    event = await victim.publish("message.received")
    got = await receiver.wait_count("/flaky", 2, timeout=30)
    assert [r.headers["webhook-id"] for r in got] == [event, event]
    assert_no_crash(stack)


@pytest.mark.stack_env(HOOKBUS_MAX_IN_FLIGHT="4")
async def test_a_flood_of_unknown_webhook_tasks_never_holds_up_known_ones(
    http: aiohttp.ClientSession, stack: Stack, topics: Topics, receiver: Receiver,
    producer: AIOKafkaProducer
) -> None:
    """Tasks of unknown webhooks are held in memory a moment for the view, and
    were counted against the fetch's room (the attempt slots): a flood of them
    stopped the fetch for every app, two seconds per `MAX_IN_FLIGHT` of them.
    A known webhook's task behind the flood is delivered while it is held."""
    tenant = Client(http, stack.ingest_url, "app_known")
    await tenant.create_webhook(target=receiver.url("/known"), triggers=["*"])
    await asyncio.sleep(1.2)
    flood = 120
    for n in range(flood):
        webhook_id = f"wh_ghost{n}_{uuid.uuid4().hex[:6]}"
        await producer.send(topics.deliveries, a_task(webhook_id, f"evt_ghost{n}"),
                            key=webhook_id.encode())
    await producer.flush()
    event = await tenant.publish("message.received")
    await receiver.wait_for("/known", event, timeout=120)
    deferred = {a.event_id for a in await attempt_records(stack, topics)
                if a.event_id.startswith("evt_ghost")}
    assert len(deferred) < flood // 2, f"{len(deferred)} of the flood went first"
    assert_no_crash(stack)
