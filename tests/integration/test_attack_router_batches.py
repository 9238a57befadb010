"""Attacks on the router's batched routing (commit c773282): rebalances,
SIGTERM and SIGKILL while batches are read, held and in flight. Real broker,
real router processes; what the router wrote and committed is read from the
topics and the group's offsets themselves. The rebalance and SIGTERM tests
passed on c773282 (they guard it); the memory test failed there (577 MB)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer, TopicPartition

from devtools.broker import Broker
from devtools.processes import Stack
from schemas.deliveries import delivery_task_decoder
from services.common.topics import Topics
from tests.conftest import PARTITIONS, Receiver, consumer_records, group_offsets
from tests.integration.client import Client
from tests.integration.test_router_failures import APP, create_topics, event_record, running, \
    webhook


async def write_backlog(bootstrap: str, topic: str, count: int, data: bytes) -> None:
    """`count` events, spread over every partition, ids evt_<n>."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        sent = [await producer.send(topic, event_record(f"evt_{n}", data),
                                    key=APP.encode(), partition=n % PARTITIONS)
                for n in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def padded(size: int) -> bytes:
    """An event's `data` of about `size` bytes."""
    return b'{"pad": "%s"}' % (b"p" * size)


async def subscribed(http: aiohttp.ClientSession, stack: Stack, receiver: Receiver,
                     hooks: int) -> None:
    """APP with `hooks` webhooks to `receiver` (every event matches each)."""
    client = Client(http, stack.ingest_url, APP)
    for n in range(hooks):
        await client.create_webhook(target=receiver.url(f"/h{n}"))


async def until_routed(bootstrap: str, topics: Topics, count: int, timeout: float) -> None:
    """Until `count` events have their Routed record in eventlog.updates."""
    async with asyncio.timeout(timeout):
        while len(await consumer_records(bootstrap, topics.eventlog_updates)) < count:
            await asyncio.sleep(0.5)


async def routed_ids(bootstrap: str, topics: Topics) -> set[str]:
    return {delivery_task_decoder.decode(r.value).event_id
            for r in await consumer_records(bootstrap, topics.deliveries)}


async def unrouted_below_commits(bootstrap: str, topics: Topics, group: str) -> list[str]:
    """The events at an offset below their partition's committed offset that
    have no delivery task: each one lost."""
    committed = await group_offsets(bootstrap, group)
    routed = await routed_ids(bootstrap, topics)
    lost = []
    for record in await consumer_records(bootstrap, topics.events):
        if record.offset < committed.get(TopicPartition(topics.events, record.partition), -1):
            event_id = record.value.split(b'"id": "')[1].split(b'"')[0].decode()
            if event_id not in routed:
                lost.append(f"{event_id}@{record.partition}/{record.offset}")
    return lost


async def test_rebalances_and_crashes_mid_batch_commit_nothing_unrouted(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    # A backlog routed by one router while a second joins and leaves the group
    # (SIGTERM and SIGKILL), then both killed: every offset committed stands
    # for an event whose task is in `deliveries`, and after a restart every
    # event is routed.
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    count = 40_000
    rng = random.Random(13)
    async with running(kafka, topics, tmp_path, "ingest") as stack, \
            aiohttp.ClientSession() as http:
        await webhook(Client(http, stack.ingest_url, APP), receiver, "/h")
        await write_backlog(kafka.bootstrap, topics.events, count, padded(2000))
        stack.start("router")
        group = f"{prefix}router"
        for round_ in range(6):
            stack.start("router", name="router-2")
            await asyncio.sleep(rng.uniform(0.5, 3))
            if round_ % 2:
                stack.kill("router-2")
            else:
                await asyncio.to_thread(stack.terminate, "router-2")
            await asyncio.sleep(rng.uniform(0.2, 1.5))
        stack.kill("router")
        print("routed when killed:", len(await routed_ids(kafka.bootstrap, topics)), "of", count,
              "committed:", await group_offsets(kafka.bootstrap, group))
        lost = await unrouted_below_commits(kafka.bootstrap, topics, group)
        assert not lost, f"{len(lost)} committed and never routed: {lost[:20]}"

        stack.restart("router")
        async with asyncio.timeout(180):
            while len(routed := await routed_ids(kafka.bootstrap, topics)) < count:
                await asyncio.sleep(2)
        assert routed == {f"evt_{n}" for n in range(count)}


async def test_sigterm_mid_batch_stops_cleanly_and_loses_nothing(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    count = 8_000
    async with running(kafka, topics, tmp_path, "ingest") as stack, \
            aiohttp.ClientSession() as http:
        await webhook(Client(http, stack.ingest_url, APP), receiver, "/h")
        await write_backlog(kafka.bootstrap, topics.events, count, padded(2000))
        stack.start("router")
        group = f"{prefix}router"
        for _ in range(3):
            await asyncio.sleep(2)
            started = asyncio.get_running_loop().time()
            code = await asyncio.to_thread(stack.terminate, "router")
            took = asyncio.get_running_loop().time() - started
            assert code == 0, stack.services["router"].log()[-3000:]
            assert took < 20
            lost = await unrouted_below_commits(kafka.bootstrap, topics, group)
            assert not lost, f"{len(lost)} committed and never routed: {lost[:20]}"
            stack.restart("router")
        async with asyncio.timeout(180):
            while len(routed := await routed_ids(kafka.bootstrap, topics)) < count:
                await asyncio.sleep(2)
        assert routed == {f"evt_{n}" for n in range(count)}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_a_backlog_of_large_events_to_many_webhooks_keeps_the_router_small(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    # A batch is planned whole before any of it is sent: up to MAX_BATCH
    # events, each with a task per matching webhook. 300 events of 400 kB to
    # five webhooks are 600 MB of tasks; the router holds a bounded share.
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    count, hooks = 300, 5
    async with running(kafka, topics, tmp_path, "ingest") as stack, \
            aiohttp.ClientSession() as http:
        await subscribed(http, stack, receiver, hooks)
        await write_backlog(kafka.bootstrap, topics.events, count, padded(400_000))
        router = stack.start("router")
        await until_routed(kafka.bootstrap, topics, count, 170)
        peak = peak_rss_mb(router.process.pid)
        print(f"router peak RSS {peak:.0f} MB")
        assert len(await consumer_records(kafka.bootstrap, topics.deliveries)) == count * hooks
        assert peak < 400  # 577 MB before MAX_BATCH_BYTES, 244 MB with 16 actors
