"""Poison records written straight to Kafka go to their topic's dead letters,
and the services keep running: the next good event is still delivered."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer

from devtools.processes import Stack
from services.common.topics import Topics
from tests.conftest import Receiver, records
from tests.integration.client import Client

APP = "app_poison"


async def test_poison_records_are_dead_lettered_and_work_goes_on(
    stack: Stack, topics: Topics, receiver: Receiver
) -> None:
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        hook = await client.create_webhook(target=receiver.url("/h"))
        await asyncio.sleep(1.2)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for value in (b"not json", b'{"type": "nope", "app_id": "app_poison"}'):
                await producer.send_and_wait(topics.events, value, key=APP.encode())
            await producer.send_and_wait(topics.deliveries, b"{broken",
                                         key=hook["id"].encode())
            # Written straight to Kafka without an id: the router gives it one.
            await producer.send_and_wait(
                topics.events, b'{"type": "message.received", "app_id": "app_poison"}',
                key=APP.encode())
        finally:
            await producer.stop()
        await receiver.wait_count("/h", 1)
        after = await client.publish("message.received")
        await receiver.wait_for("/h", after)

    async with asyncio.timeout(20):
        while len(event_letters := await records(bootstrap, topics.events_dlq)) < 2:
            await asyncio.sleep(0.2)
    reasons = [msgspec.json.decode(value)["reason"] for _, value in event_letters]
    assert any("not an event envelope" in r for r in reasons)
    assert any("unknown event type" in r for r in reasons)
    task_letters = await records(bootstrap, topics.deliveries_dlq)
    assert [value for _, value in task_letters] == [b"{broken"]
    assert all(s.alive for s in stack.services.values())
