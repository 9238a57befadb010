"""The delivery rules of contract §7 on the real broker, the services running
as processes, against real local HTTP and HTTPS receivers. The stack's retry
schedule is `1s,2s`: three attempts in all."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from services.common.topics import Topics
from devtools.processes import Stack
from tests.conftest import Receiver, make_stack, records
from tests.integration.client import Client

APP = "app_delivery"
SCHEDULE = (1.0, 2.0)
EARLY = 0.25  # a retry may come this much before its delay (clocks, commit cadence)


def answers(*statuses: int, then: int = 204, headers: dict[str, str] | None = None):  # noqa: ANN201
    """A responder answering `statuses` in turn, then `then` forever."""
    async def respond(_: web.Request, n: int) -> web.Response:
        status = statuses[n - 1] if n <= len(statuses) else then
        return web.Response(status=status, headers=headers if n <= len(statuses) else None)
    return respond


async def attempts_of(client: Client, webhook_id: str, count: int) -> list[dict]:
    """The webhook's attempts log, once it holds `count` attempts."""
    async with asyncio.timeout(20):
        while True:
            page = await client.read(f"/webhooks/{webhook_id}/attempts?limit=50")
            if len(page["attempts"]) >= count:
                return page["attempts"]
            await asyncio.sleep(0.2)


async def dead_letters(bootstrap: str, topics: Topics, count: int) -> list:
    async with asyncio.timeout(30):
        while len(found := await records(bootstrap, topics.deliveries_dlq)) < count:
            await asyncio.sleep(0.3)
    return found


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, stack.ingest_url, APP)


async def subscribe(client: Client, url: str, **body: object) -> dict:
    hook = await client.create_webhook(target=url, triggers=["*"], **body)
    await asyncio.sleep(1.2)  # in force within a second
    return hook


async def test_retries_follow_the_schedule_with_one_webhook_id(
    client: Client, receiver: Receiver
) -> None:
    receiver.respond("/flaky", answers(500, 503))
    hook = await subscribe(client, receiver.url("/flaky"))
    event = await client.publish("message.received")
    got = await receiver.wait_count("/flaky", 3)
    assert {r.headers["webhook-id"] for r in got} == {event}
    assert got[1].at - got[0].at >= SCHEDULE[0] - EARLY
    assert got[2].at - got[1].at >= SCHEDULE[1] - EARLY
    assert len({r.headers["webhook-signature"] for r in got}) == 3  # a timestamp per attempt

    attempts = await attempts_of(client, hook["id"], 3)
    assert [(a["attempt"], a["result"], a["status_code"]) for a in attempts] == \
        [(3, "success", 204), (2, "failure", 503), (1, "failure", 500)]
    assert all(a["event_id"] == event and a["latency_ms"] >= 0 for a in attempts)
    page = await client.call("GET", f"/webhooks/{hook['id']}/attempts?limit=2", 200)
    rest = await client.call(
        "GET", f"/webhooks/{hook['id']}/attempts?limit=2&cursor={page['next_cursor']}", 200)
    assert [a["attempt"] for a in page["attempts"] + rest["attempts"]] == [3, 2, 1]
    assert "next_cursor" not in rest


async def test_exhausted_tasks_are_dead_letters_and_replay_delivers_them(
    client: Client, receiver: Receiver, stack: Stack, topics: Topics
) -> None:
    healthy = False

    async def down_then_up(_: web.Request, n: int) -> web.Response:
        return web.Response(status=204 if healthy else 500, text="" if healthy else "boom")

    receiver.respond("/down", down_then_up)
    hook = await subscribe(client, receiver.url("/down"))
    events = {await client.publish("message.received", n=n) for n in range(2)}
    await receiver.wait_count("/down", 6)
    letters = await dead_letters(stack.env["HOOKBUS_KAFKA_BOOTSTRAP"], topics, 2)
    assert all(b"HTTP 500" in value for _, value in letters)
    attempts = await attempts_of(client, hook["id"], 8)
    # Each dead letter is in the log too, after its event's last failure.
    assert sorted(a["result"] for a in attempts) == ["dead"] * 2 + ["failure"] * 6
    assert {(a["event_id"], a["attempt"], a["error"]) for a in attempts
            if a["result"] == "dead"} == {(event, 3, "HTTP 500 Internal Server Error")
                                         for event in events}
    assert [a for a in attempts if a["result"] == "failure"][0]["response"] == "boom"

    healthy = True
    replayed = await client.replay(hook["id"])
    assert (replayed["replayed"], replayed["total"]) == (2, 2)
    got = await receiver.wait_count("/down", 8)
    assert {r.headers["webhook-id"] for r in got[6:]} == events
    none = await client.replay(hook["id"], since="2100-01-01T00:00:00Z")
    assert (none["replayed"], none["total"]) == (0, 0)


async def test_retry_after_is_honoured(client: Client, receiver: Receiver) -> None:
    receiver.respond("/busy", answers(429, headers={"Retry-After": "2"}))
    await subscribe(client, receiver.url("/busy"))
    await client.publish("message.received")
    got = await receiver.wait_count("/busy", 2)
    assert got[1].at - got[0].at >= 2 - EARLY  # not the schedule's 1s


async def test_410_ends_retries_and_disables_the_webhook(
    client: Client, receiver: Receiver
) -> None:
    receiver.respond("/gone", answers(410))
    hook = await subscribe(client, receiver.url("/gone"))
    witness = await subscribe(client, receiver.url("/witness"))
    await client.publish("message.received")
    async with asyncio.timeout(20):
        while (await client.call("GET", f"/webhooks/{hook['id']}", 200))["enabled"]:
            await asyncio.sleep(0.2)
    disabled = await client.call("GET", f"/webhooks/{hook['id']}", 200)
    assert "410" in disabled["disabled_reason"]
    later = await client.publish("message.received")
    await receiver.wait_for("/witness", later)
    await asyncio.sleep(SCHEDULE[0] + 0.5)
    assert len(receiver.on("/gone")) == 1
    assert witness["id"] != hook["id"]


async def test_redirects_are_failures_and_not_followed(
    client: Client, receiver: Receiver
) -> None:
    async def moved(_: web.Request, n: int) -> web.Response:
        return web.Response(status=302, headers={"Location": receiver.url("/landing")})

    receiver.respond("/moved", moved)
    hook = await subscribe(client, receiver.url("/moved"))
    await client.publish("message.received")
    await receiver.wait_count("/moved", 3)
    attempts = await attempts_of(client, hook["id"], 3)
    assert {a.get("status_code") for a in attempts if a["result"] != "dead"} == {302}
    assert receiver.on("/landing") == []


async def test_dismiss_targets_are_counted_never_sent(
    client: Client, receiver: Receiver, stack: Stack
) -> None:
    await subscribe(client, receiver.url("/dismissed"), target_type="DISMISS")
    await subscribe(client, receiver.url("/witness"))
    event = await client.publish("message.received")
    await receiver.wait_for("/witness", event)
    await asyncio.sleep(0.5)
    assert receiver.on("/dismissed") == []
    port = stack.services["deliverer"].port
    async with client.http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert 'hookbus_deliveries_total{outcome="dismissed"} 1.0' in await response.text()


async def test_oauth2_client_credentials(client: Client, receiver: Receiver) -> None:
    issued: list[str] = []
    revoked: set[str] = set()
    requests: list[dict[str, str]] = []

    async def token(request: web.Request, n: int) -> web.Response:
        form = dict(await request.post())
        requests.append(form | {"authorization": request.headers.get("Authorization", "")})
        issued.append(f"tok-{n}")
        return web.json_response({"access_token": issued[-1], "expires_in": 3600})

    async def protected(request: web.Request, n: int) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        ok = bearer in issued and bearer not in revoked
        return web.Response(status=204 if ok else 401)

    receiver.respond("/token", token)
    receiver.respond("/protected", protected)
    await subscribe(client, receiver.url("/protected"), client_credentials={
        "client_id": "hb", "client_secret": "s3cret", "endpoint": receiver.url("/token"),
        "scope": "webhooks"})
    first = await client.publish("message.received")
    second = await client.publish("message.received")
    await receiver.wait_for("/protected", first)
    await receiver.wait_for("/protected", second)
    assert len(issued) == 1  # cached
    assert requests[0]["authorization"] == "Basic " + base64.b64encode(b"hb:s3cret").decode()
    assert requests[0]["grant_type"] == "client_credentials" and requests[0]["scope"] == "webhooks"

    revoked.add("tok-1")
    third = await client.publish("message.received")
    arrivals = [r for r in await receiver.wait_count("/protected", 4)
                if r.headers["webhook-id"] == third]
    assert [r.headers["Authorization"] for r in arrivals] == ["Bearer tok-1", "Bearer tok-2"]

    await subscribe(client, receiver.url("/protected"), client_credentials={
        "client_id": "form-id", "client_secret": "form-secret",
        "endpoint": receiver.url("/token"), "token_request_type": "FORM"})
    await client.publish("contact.created")
    async with asyncio.timeout(20):
        while len(requests) < 3:
            await asyncio.sleep(0.1)
    assert requests[2]["client_id"] == "form-id" and requests[2]["client_secret"] == "form-secret"
    assert requests[2]["authorization"] == ""


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_receiver(ca: trustme.CA) -> AsyncIterator[Receiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    receiver = Receiver(context)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_https_verified_against_the_ca_bundle(
    kafka, topics: Topics, tmp_path: Path, https_receiver: Receiver, ca_bundle: str  # noqa: ANN001
) -> None:
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path, HOOKBUS_CA_BUNDLE=ca_bundle)
    for name in ("eventlog", "ingest", "router", "deliverer"):
        stack.start(name)
    stranger = Receiver(_self_signed_context(tmp_path))
    await stranger.start()
    try:
        await stack.wait_ready()
        async with aiohttp.ClientSession() as http:
            client = Client(http, stack.ingest_url, APP)
            await subscribe(client, https_receiver.url("/tls", host="localhost"))
            untrusted = await subscribe(client, stranger.url("/tls", host="localhost"))
            event = await client.publish("message.received")
            await https_receiver.wait_for("/tls", event)
            attempts = await attempts_of(client, untrusted["id"], 1)
            assert "certificate" in attempts[0]["error"].lower()
            assert stranger.received == []
    finally:
        await stranger.stop()
        stack.stop()


def _self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A certificate for localhost from a CA the deliverer does not trust."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(context)
    return context


@pytest.mark.partitions(1)
@pytest.mark.stack_env(HOOKBUS_DELIVERY_TIMEOUT="10s")
async def test_a_hanging_endpoint_does_not_delay_the_others_on_its_partition(
    client: Client, receiver: Receiver
) -> None:
    hang_started: list[float] = []
    released = asyncio.Event()

    async def hang(_: web.Request, n: int) -> web.Response:
        hang_started.append(time.monotonic())
        await released.wait()
        return web.Response(status=204)

    receiver.respond("/hang", hang)
    await subscribe(client, receiver.url("/hang"))
    healthy = [f"/ok{n}" for n in range(3)]
    for path in healthy:
        await subscribe(client, receiver.url(path))
    published_at = time.monotonic()
    try:
        for n in range(30):
            await client.publish("message.received", n=n)
        for path in healthy:
            await receiver.wait_count(path, 30, timeout=60)
    finally:
        released.set()
    last_healthy = max(r.at for path in healthy for r in receiver.on(path))
    waited = last_healthy - published_at
    print(f"healthy endpoints had all 90 deliveries {waited:.2f}s after the first publish, "
          f"beside an endpoint that hangs for the 10s timeout")
    assert hang_started, "the hanging endpoint was attempted"
    # Had they queued behind the hanging attempts, they would have waited for a timeout.
    assert last_healthy < hang_started[0] + 10


async def test_tasks_for_a_dead_endpoint_end_as_dead_letters_each_tried(
    client: Client, stack: Stack, topics: Topics
) -> None:
    """The breaker opens after a few failures and holds tasks back without using
    up their attempts, until their deadline: all end as dead letters, none
    untried (test_deliverer_edges.py counts every attempt of the schedule)."""
    hook = await subscribe(client, "http://127.0.0.1:1/nobody-listens")
    events = {await client.publish("message.received", n=n) for n in range(20)}
    letters = await dead_letters(stack.env["HOOKBUS_KAFKA_BOOTSTRAP"], topics, 20)
    assert len(letters) == 20
    attempts = await attempts_of(client, hook["id"], 20)
    tried = {a["event_id"] for a in attempts if a["result"] == "failure"}
    assert tried == events
