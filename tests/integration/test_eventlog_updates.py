"""What the event log (issue 11) is told, on a real broker by the real router,
ingest and deliverer (no event log running): a `Routed` record in
`eventlog.updates` for every event the router routes, matched or not, keyed by
its app (so murmur2 places it in the partition that owns the app, whatever
partition the event came from), pointing at the event's record in `events`; none
for an event it dead-letters; and for a test event, one pointing at its task in
`deliveries`, whose series' origin is `test`, both written before the 202."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from devtools.broker import Broker
from devtools.processes import Stack
from schemas.attempts import Attempt
from schemas.deliveries import DeliveryTask
from schemas.eventlog import Routed, update_decoder
from services.common.topics import Topics
from services.eventlog.keys import partition_of
from tests.conftest import PARTITIONS, Receiver, consumer_records, make_stack, until
from tests.integration.client import Client

APP = "app_logged"


@pytest.fixture
async def stack(kafka: Broker, topics: Topics, tmp_path: Path) -> AsyncIterator[Stack]:
    """Ingest, router and deliverer, and no event log: what they write is read here."""
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    for name in ("ingest", "router", "deliverer"):
        stack.start(name)
    try:
        await stack.wait_ready()
        yield stack
    finally:
        stack.stop()


async def routed(bootstrap: str, topics: Topics) -> list[tuple[ConsumerRecord, Routed]]:
    found = []
    for record in await consumer_records(bootstrap, topics.eventlog_updates):
        update = update_decoder.decode(record.value)
        assert isinstance(update, Routed), update
        found.append((record, update))
    return found


async def routed_of(bootstrap: str, topics: Topics, *event_ids: str,
                    timeout: float = 30) -> dict[str, tuple[ConsumerRecord, Routed]]:
    """The Routed record of each event, once all are there."""
    async def all_there() -> dict[str, tuple[ConsumerRecord, Routed]]:
        found = {u.event_id: (r, u) for r, u in await routed(bootstrap, topics)}
        return found if set(event_ids) <= set(found) else {}

    await until(all_there, timeout=timeout)
    return await all_there()


async def test_every_routed_event_is_told_to_the_event_log_in_its_apps_partition(
    stack: Stack, topics: Topics, receiver: Receiver, producer: AIOKafkaProducer
) -> None:
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        hook = await client.create_webhook(target=receiver.url("/h"), triggers=["message"])
        second = await client.create_webhook(target=receiver.url("/h2"), triggers=["*"])
        await asyncio.sleep(1.2)  # in force within a second
        matched = await client.publish("message.received", text="hi")
        unmatched_type = await client.publish("contact.created")
        # Larger than a producer batch: its Routed record waits for its tasks.
        large = await client.publish("message.received", text="x" * 40_000)
        nobody = await Client(http, stack.ingest_url, "app_without_webhooks").publish(
            "message.received")
    # A record the router dead-letters: it is told nothing of it.
    await producer.send_and_wait(topics.events, b"not an event", key=APP.encode())
    found = await routed_of(bootstrap, topics, matched, unmatched_type, large, nobody)

    both = sorted([hook["id"], second["id"]])
    assert {event: u.webhook_ids for event, (_, u) in found.items()} == {
        matched: both, large: both, unmatched_type: [second["id"]], nobody: []}
    events = {(r.partition, r.offset): r for r in await consumer_records(bootstrap, topics.events)}
    for event_id, (record, update) in found.items():
        assert record.key == update.app_id.encode()
        assert record.partition == partition_of(update.app_id, PARTITIONS)
        assert update.source == "events"
        source = msgspec.json.decode(events[update.partition, update.offset].value)
        assert (source["id"], source["type"]) == (event_id, update.event_type)
    # The dead letter is written; still no Routed record beyond the four.
    await until(lambda: _has(bootstrap, topics.events_dlq), timeout=30)
    await asyncio.sleep(0.5)
    assert len(await routed(bootstrap, topics)) == 4
    await receiver.wait_for("/h", large)


async def _has(bootstrap: str, topic: str) -> bool:
    return bool(await consumer_records(bootstrap, topic))


async def test_a_test_event_is_told_to_the_event_log_after_its_task_before_the_202(
    stack: Stack, topics: Topics, receiver: Receiver
) -> None:
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        hook = await client.create_webhook(target=receiver.url("/t"), triggers=["message"])
        await asyncio.sleep(1.2)
        tested = (await client.call("POST", f"/webhooks/{hook['id']}/test", 202))["id"]
    # Both acknowledged before the 202: there at once.
    [(record, update)] = [(r, u) for r, u in await routed(bootstrap, topics)
                          if u.event_id == tested]
    assert record.key == APP.encode()
    assert record.partition == partition_of(APP, PARTITIONS)
    assert (update.source, update.event_type, update.webhook_ids) == \
        ("deliveries", "webhook.test", [hook["id"]])
    [task_record] = [r for r in await consumer_records(bootstrap, topics.deliveries)
                     if r.partition == update.partition and r.offset == update.offset]
    task = msgspec.json.decode(task_record.value, type=DeliveryTask)
    assert (task.event_id, task.webhook_id, task.origin) == (tested, hook["id"], "test")
    assert task.event_created_at == update.created_at
    await receiver.wait_for("/t", tested)

    async def attempts() -> list[Attempt]:
        return [a for a in (msgspec.json.decode(r.value, type=Attempt) for r in
                            await consumer_records(bootstrap, topics.attempts) if r.value)
                if a.event_id == tested]

    await until(attempts)
    assert [(a.result, a.origin) for a in await attempts()] == [("success", "test")]
