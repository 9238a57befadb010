"""Attacks on the router (commit 5de91c0) by a hostile producer writing
arbitrary records to `events`: each test failed before its fix. Real broker,
real router process; outputs are read from the topics themselves."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition

from devtools.broker import Broker
from devtools.processes import Stack
from schemas.deliveries import DeliveryTask
from services.common.topics import Topics
from tests.conftest import Receiver, consumer_records
from tests.integration.client import Client
from tests.integration.test_router_failures import (
    APP,
    committed_offset,
    dead_letters,
    running,
    subscribed,  # noqa: F401 - a fixture, used by name
    write_events,
)


async def test_a_key_too_large_for_events_dlq_is_dead_lettered_not_a_crash_loop(
    kafka: Broker, topics: Topics, tmp_path: Path
) -> None:
    # `events` takes records up to the broker's message.max.bytes (1048588); the
    # router writes at most its producer's max request size (1000000). A record
    # whose key alone is larger cannot be dead-lettered with its key "as read":
    # before the fix the letter was refused, the router exited 70, and after
    # every restart met the same record first: one record stopped all routing.
    huge_key = b"k" * 1_040_000
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                                max_request_size=2_000_000)
    await producer.start()
    try:
        poison = await producer.send_and_wait(topics.events, b"not json", key=huge_key,
                                              partition=0)
        good = await producer.send_and_wait(
            topics.events, b'{"type": "message.received", "app_id": "%s"}' % APP.encode(),
            key=APP.encode(), partition=0)
    finally:
        await producer.stop()

    async with running(kafka, topics, tmp_path, "router") as stack:
        [letter] = await dead_letters(kafka.bootstrap, topics, 1)
        assert (letter.partition, letter.offset) == (0, poison.offset)
        assert "not an event envelope" in letter.reason
        [record] = [r for r in await consumer_records(kafka.bootstrap, topics.events_dlq)]
        assert record.key is not None and huge_key.startswith(record.key)
        assert letter.key_size == len(huge_key) and letter.key_truncated
        group = f"{topics.prefix}router"
        async with asyncio.timeout(30):
            while (await committed_offset(kafka.bootstrap, group,
                                          TopicPartition(topics.events, 0)) or 0) <= good.offset:
                await asyncio.sleep(0.5)
        assert stack.services["router"].alive


async def test_a_created_at_without_time_zone_is_routed_as_utc(
    stack: Stack, topics: Topics, receiver: Receiver, subscribed: Client  # noqa: F811
) -> None:
    client = subscribed
    # `created_at` without an offset is valid RFC 3339 for msgspec but a naive
    # datetime: before the fix the router put it as is into the delivery task
    # and the body, where it cannot be compared with an aware time (the
    # deliverer's event-to-delivery metric raised TypeError on every success).
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    await write_events(bootstrap, topics.events, msgspec.json.encode({
        "id": "evt_naive", "type": "message.received", "app_id": APP,
        "created_at": "2026-11-22T18:15:00"}))
    await asyncio.sleep(0.5)
    tasks = [msgspec.json.decode(r.value, type=DeliveryTask)
             for r in await consumer_records(bootstrap, topics.deliveries)]
    [task] = [t for t in tasks if t.event_id == "evt_naive"]
    assert task.event_created_at == datetime(2026, 11, 22, 18, 15, tzinfo=UTC)
    body = json.loads(bytes(task.body))
    assert body["created_at"] == "2026-11-22T18:15:00Z"
    await receiver.wait_for("/h", "evt_naive")
    after = await client.publish("message.received", text="after")
    await receiver.wait_for("/h", after)
    assert stack.services["deliverer"].alive
