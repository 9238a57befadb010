"""Attacks on the event log (issue 11) on the real broker, through ingest's API:
a poison `eventlog.updates` record, a replay window before 1970, one app's
unreadable envelopes stalling every app's event details, and a client's `Via`
header.

Each test fails while the bug it names is there."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from devtools.processes import Stack
from services.common.topics import Topics
from services.eventlog.keys import partition_of
from tests.conftest import PARTITIONS, Receiver, auth, consumer_records
from tests.integration.test_eventlog import eventually

APP = "app_attack"


async def call(http: aiohttp.ClientSession, stack: Stack, method: str, path: str,
               app: str = APP, headers: dict[str, str] | None = None,
               **kwargs: object) -> tuple[int, dict | None]:
    async with http.request(method, stack.ingest_url + path,
                            headers=auth(app) | (headers or {}), **kwargs) as response:
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, None


async def _listed(http: aiohttp.ClientSession, stack: Stack, event_id: str,
                  app: str = APP) -> bool:
    status, page = await call(http, stack, "GET", f"/v1/apps/{app}/events?limit=250", app=app)
    return status == 200 and page is not None and event_id in [e["id"] for e in page["events"]]


async def _publish(http: aiohttp.ClientSession, stack: Stack, app: str = APP) -> str:
    status, accepted = await call(http, stack, "POST", f"/v1/apps/{app}/events", app=app,
                                  json={"type": "message.received", "data": {"n": 1}})
    assert status == 202, accepted
    assert accepted is not None
    return accepted["id"]


async def test_a_poison_update_does_not_stop_the_event_log_for_good(
        stack: Stack, topics: Topics, producer: AIOKafkaProducer,
        http: aiohttp.ClientSession) -> None:
    """A Routed record on `eventlog.updates` dated '0001-01-01T00:00:00' (no
    offset: msgspec decodes it naive) makes fold.ms_of raise ValueError, which
    the file agent does not skip: it exits (70) before the commit, and every
    restart reads the same record and exits again. Nothing is filed after it
    for any app of that partition."""
    first = await _publish(http, stack)
    await eventually(lambda: _listed(http, stack, first))
    poison = json.dumps({
        "type": "routed", "app_id": APP, "event_id": "evt_poison",
        "event_type": "message.received", "created_at": "0001-01-01T00:00:00",
        "source": "events", "partition": 0, "offset": 0, "webhook_ids": []}).encode()
    await producer.send_and_wait(topics.eventlog_updates, poison, key=APP.encode())
    after = await _publish(http, stack)

    restarts = []

    async def listed_meanwhile_restarting() -> bool:
        restarts.extend(stack.restart_dead())  # as a Deployment would
        return await _listed(http, stack, after)

    try:
        await eventually(listed_meanwhile_restarting, timeout=90, every=1)
    except AssertionError:
        raise AssertionError(
            f"an event published after the poison record is never listed; restarts: "
            f"{restarts}; event log log tail:\n{stack.services['eventlog'].log()[-1500:]}"
        ) from None
    assert not restarts, f"the poison record stopped {restarts}"


async def test_a_replay_since_before_1970_is_not_a_500(
        stack: Stack, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    """replay.window passes since.timestamp() * 1000 to offsets_for_times, which
    raises ValueError for a negative time: not a KafkaError, so a 500 for a
    valid RFC 3339 date-time (the start of the window: every dead letter)."""
    base = f"/v1/apps/{APP}"
    status, webhook = await call(http, stack, "POST", base + "/webhooks",
                                 json={"target": receiver.url("/ok")})
    assert status == 201 and webhook is not None
    status, body = await call(http, stack, "POST", f"{base}/webhooks/{webhook['id']}/replay",
                              json={"since": "1969-12-31T00:00:00Z"})
    assert status in (202, 400), (status, body)


def _apps_on_two_partitions() -> tuple[str, str]:
    a = "app_slow"
    for n in range(100):
        b = f"app_other_{n}"
        if partition_of(b, PARTITIONS) != partition_of(a, PARTITIONS):
            return a, b
    raise AssertionError("no app on another partition")


async def test_one_apps_unreadable_envelopes_do_not_stall_every_apps_event_details(
        stack: Stack, kafka, topics: Topics, http: aiohttp.ClientSession) -> None:  # type: ignore[no-untyped-def]
    """The envelope reader is one consumer behind one lock, and a fetch of a
    position that is gone (past `events`' retention: here its records deleted
    below it, as retention does) waits its whole FETCH_TIMEOUT_MS (3 s): the
    consumer resets to the end and gets nothing. A few detail requests of one
    app's expired events hold the lock for 3 s each, and every other app's
    detail and resend wait behind them (past ingest's 10 s: a 503)."""
    slow, other = _apps_on_two_partitions()
    slow_event = await _publish(http, stack, slow)
    other_event = await _publish(http, stack, other)
    await eventually(lambda: _listed(http, stack, slow_event, slow))
    await eventually(lambda: _listed(http, stack, other_event, other))
    [record] = [r for r in await consumer_records(kafka.bootstrap, topics.events)
                if r.value and json.loads(r.value).get("id") == slow_event]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.delete_records(
            {TopicPartition(topics.events, record.partition): RecordsToDelete(record.offset + 1)})
    finally:
        await admin.close()

    async def timed(app: str, event_id: str) -> tuple[int, float]:
        started = time.monotonic()
        status, _ = await call(http, stack, "GET", f"/v1/apps/{app}/events/{event_id}", app=app)
        return status, time.monotonic() - started

    stalled = [asyncio.create_task(timed(slow, slow_event)) for _ in range(4)]
    await asyncio.sleep(0.3)
    status, took = await timed(other, other_event)
    results = await asyncio.gather(*stalled)
    assert status == 200 and took < 2.0, (
        f"{other}'s event detail answered {status} after {took:.1f}s, behind {slow}'s "
        f"expired events: {results}")


async def test_a_clients_via_header_is_not_a_500(stack: Stack, http: aiohttp.ClientSession) -> None:
    """Ingest's loop guard trusts the client's own Via header: a client (or any
    proxy in front of ingest) naming `hookbus-ingest` gets a 500 'the event
    log's owner map names ingest itself', logged as an error: a client-made
    500 that blames the deployment."""
    status, body = await call(http, stack, "GET", f"/v1/apps/{APP}/events",
                              headers={"Via": "1.1 hookbus-ingest"})
    assert status == 200, (status, body)
