"""The router never commits what it did not finish: records it cannot route go
to `events.dlq` with their reason, a delivery task too large for `deliveries`
dead-letters its event, and any other failure ends the router before the
event's offset is committed, so that the restarted router routes it. It reads
`events` with isolation level read_committed. Real broker, real processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from devtools.broker import Broker
from devtools.processes import Stack
from schemas.deliveries import delivery_task_decoder
from schemas.eventlog import Routed, update_decoder
from schemas.events import EventDeadLetter
from services.common.topics import Topics, ensure_topics
from services.router.app import EXIT_UNFINISHED_EVENT
from services.router.read_committed import PREFETCH_BACKOFF_SECONDS
from tests.conftest import PARTITIONS, Receiver, consumer_records, group_offsets, make_stack
from tests.integration.client import Client

APP = "app_router_failures"
SEND_TIMEOUT = "5s"
# The key of the records `set_max_message_bytes` writes to see a new limit
# enforced; those the broker still accepted are skipped when reading.
PROBE = b"probe"


# Helpers ------------------------------------------------------------------

async def dead_letters(bootstrap: str, topics: Topics, count: int) -> list[EventDeadLetter]:
    """The letters of `events.dlq`, once there are at least `count`."""
    async with asyncio.timeout(60):
        while len(found := [r for r in await consumer_records(bootstrap, topics.events_dlq)
                            if r.key != PROBE]) < count:
            await asyncio.sleep(0.3)
    return [msgspec.json.decode(r.value, type=EventDeadLetter) for r in found]


async def committed_offset(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    return (await group_offsets(bootstrap, group)).get(tp)


async def assert_stopped_unfinished(bootstrap: str, stack: Stack, prefix: str, topic: str,
                                    partition: int, offset: int) -> None:
    """The router ended with EXIT_UNFINISHED_EVENT, its critical line names the
    event record at `partition`/`offset` of `topic`, and its group committed
    no offset past it."""
    assert await wait_exit(stack, "router") == EXIT_UNFINISHED_EVENT
    where = f"{topic}/{partition}@{offset}"
    critical = [json.loads(line) for line in stack.services["router"].log().splitlines()
                if line.startswith("{") and '"critical"' in line]
    assert [line for line in critical if where in line["message"]], critical
    committed = await committed_offset(bootstrap, f"{prefix}router",
                                       TopicPartition(topic, partition))
    assert committed is None or committed <= offset


async def set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    """Change a topic's `max.message.bytes`, and wait until the broker enforces
    it (a record just over the limit is refused)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        async with asyncio.timeout(30):
            while True:
                try:  # a probe (see PROBE): refused once the new limit applies
                    await producer.send_and_wait(topic, b"p" * (limit + 1000), key=PROBE,
                                                 partition=0)
                except MessageSizeTooLargeError:
                    return
                await asyncio.sleep(0.5)
    finally:
        await producer.stop()


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        async with asyncio.timeout(30):
            while topic in await admin.list_topics():
                await asyncio.sleep(0.3)
    finally:
        await admin.close()


async def create_topics(bootstrap: str, topics: Topics,
                        only: Callable[[str], bool] = lambda name: True,
                        **configs: dict[str, str]) -> None:
    """The test's topics; `configs` maps an attribute of `Topics` (`deliveries`)
    to settings added to that topic's."""
    extra = {getattr(topics, attr): config for attr, config in configs.items()}
    specs = [type(spec)(spec.name, spec.config | extra.get(spec.name, {}))
             for spec in topics.specs() if only(spec.name)]
    await ensure_topics(bootstrap, specs, partitions=PARTITIONS)


@asynccontextmanager
async def running(kafka: Broker, topics: Topics, log_dir: Path, *services: str,
                  **env: str) -> AsyncIterator[Stack]:
    stack = make_stack(kafka.bootstrap, topics.prefix, log_dir,
                       HOOKBUS_ROUTER_SEND_TIMEOUT=SEND_TIMEOUT, **env)
    for name in services:
        stack.start(name)
    try:
        await stack.wait_ready()
        yield stack
    finally:
        stack.stop()


async def write_events(bootstrap: str, topic: str, *values: bytes | None) -> None:
    """Records written straight to `events`, as any producer may."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_request_size=4_000_000)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=APP.encode())
    finally:
        await producer.stop()


async def write_together(bootstrap: str, topic: str, prefix: str,
                         *values: bytes | None) -> list[int]:
    """Records written to partition 0 of `topic` in one Kafka transaction, so
    that a read_committed consumer (the router) sees them all at once and reads
    them together; their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000,
                                transactional_id=f"{prefix}test-together")
    await producer.start()
    try:
        async with producer.transaction():
            sent = [await producer.send(topic, value, key=APP.encode(), partition=0)
                    for value in values]
        return [(await future).offset for future in sent]
    finally:
        await producer.stop()


def event_record(event_id: str, data: bytes = b"{}") -> bytes:
    return b'{"id": "%s", "type": "message.received", "app_id": "%s", "data": %s}' % (
        event_id.encode(), APP.encode(), data)


async def wait_committed(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    """Until the group's committed offset of `tp` is past `offset`."""
    async with asyncio.timeout(30):
        while (await committed_offset(bootstrap, group, tp) or 0) <= offset:
            await asyncio.sleep(0.5)


async def wait_exit(stack: Stack, name: str, timeout: float = 60) -> int:
    process = stack.services[name].process
    return await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)


def nested(depth: int) -> bytes:
    return b'{"deep": ' + b"[" * depth + b"]" * depth + b"}"


async def webhook(client: Client, receiver: Receiver, path: str) -> dict:
    hook = await client.create_webhook(target=receiver.url(path))
    await asyncio.sleep(1.2)  # a new webhook is in force within a second
    return hook


@pytest.fixture
async def subscribed(stack: Stack, receiver: Receiver) -> AsyncIterator[Client]:
    """A client of the stack's ingest for APP, with a webhook at the receiver's /h."""
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        await webhook(client, receiver, "/h")
        yield client


# Records that cannot be routed ---------------------------------------------

async def test_deep_nesting_and_tombstones_are_dead_lettered_and_routing_goes_on(
    stack: Stack, topics: Topics, receiver: Receiver, subscribed: Client
) -> None:
    client = subscribed
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    deep = b'{"type": "message.received", "app_id": "%s", "data": %s}' % (
        APP.encode(), nested(3000))
    await write_events(bootstrap, topics.events, deep, None)
    after = await client.publish("message.received", text="after the poison")
    await receiver.wait_for("/h", after)

    letters = await dead_letters(bootstrap, topics, 2)
    by_reason = {("tombstone" if "tombstone" in d.reason else "deep"): d for d in letters}
    assert "nested too deeply" in by_reason["deep"].reason
    assert "recursion" in by_reason["deep"].reason
    assert by_reason["deep"].value == deep and not by_reason["deep"].value_truncated
    assert by_reason["tombstone"].value == b"" and by_reason["tombstone"].value_size == 0
    written = await consumer_records(bootstrap, topics.events)
    assert {(d.partition, d.offset) for d in letters} == {
        (r.partition, r.offset) for r in written if r.value in (deep, None)}
    assert [r.headers["webhook-id"] for r in receiver.on("/h")] == [after]
    assert stack.services["router"].alive
    # SIGTERM still stops it cleanly, not through the unfinished-event exit.
    assert stack.stop()["router"] == 0


async def test_tasks_too_large_for_deliveries_dead_letter_their_event(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    # Checked before sending against the topic's limit read at start, and, when
    # the limit shrinks under a running router, refused by the broker.
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics, deliveries={"max.message.bytes": "65536"})
    async with running(kafka, topics, tmp_path, "ingest", "router", "deliverer") as stack, \
            aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        await webhook(client, receiver, "/h")
        too_large = await client.publish("message.received", text="x" * 100_000)
        await set_max_message_bytes(kafka.bootstrap, topics.deliveries, 32_768)
        refused = await client.publish("message.received", text="y" * 50_000)
        after = await client.publish("message.received", text="small")
        await receiver.wait_for("/h", after)

        letters = {json.loads(d.value)["id"]: d for d in
                   await dead_letters(kafka.bootstrap, topics, 2)}
        assert set(letters) == {too_large, refused}
        assert "delivery task too large" in letters[too_large].reason
        assert "over the 65536 bytes the deliveries topic takes" in letters[too_large].reason
        assert "the broker refused a task of" in letters[refused].reason
        assert [r.headers["webhook-id"] for r in receiver.on("/h")] == [after]
        assert stack.services["router"].alive


async def test_a_batch_mixing_poison_and_good_events_dead_letters_only_the_poison(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    # Records the router reads together are routed together; whatever is
    # wrong with one of them (it cannot be planned, its task is too large for
    # the limit read at start, or the broker refuses its task) is that one's.
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics, deliveries={"max.message.bytes": "65536"})
    async with running(kafka, topics, tmp_path, "ingest", "router") as stack, \
            aiohttp.ClientSession() as http:
        hook = await webhook(Client(http, stack.ingest_url, APP), receiver, "/h")
        # Under the limit read at start, over the broker's now (and alone in
        # its producer batch): refused by the broker.
        await set_max_message_bytes(kafka.bootstrap, topics.deliveries, 32_768)
        good = [f"evt_good{n}" for n in range(5)]
        poison = {
            "not json": b"not json",
            "tombstone": None,
            "planned too large": event_record("evt_large", b'{"t": "%s"}' % (b"x" * 100_000)),
            "refused": event_record("evt_refused", b'{"t": "%s"}' % (b"y" * 50_000)),
            "deep": event_record("evt_deep", nested(300)),
        }
        values = [event_record(good[0]), poison["not json"], event_record(good[1]),
                  poison["tombstone"], poison["planned too large"], event_record(good[2]),
                  poison["refused"], event_record(good[3]), poison["deep"],
                  event_record(good[4])]
        offsets = await write_together(kafka.bootstrap, topics.events, prefix, *values)
        await wait_committed(kafka.bootstrap, f"{prefix}router",
                             TopicPartition(topics.events, 0), offsets[-1])

        letters = await dead_letters(kafka.bootstrap, topics, len(poison))
        poisoned = {offsets[values.index(value)]: name for name, value in poison.items()}
        assert {letter.offset: letter.reason for letter in letters}.keys() == poisoned.keys()
        reasons = {poisoned[letter.offset]: letter.reason for letter in letters}
        assert "not an event envelope" in reasons["not json"]
        assert "tombstone" in reasons["tombstone"]
        assert "over the 65536 bytes the deliveries topic takes" in reasons["planned too large"]
        assert "the broker refused a task of" in reasons["refused"]
        assert "nested 301 levels deep" in reasons["deep"]
        tasks = [delivery_task_decoder.decode(r.value)
                 for r in await consumer_records(kafka.bootstrap, topics.deliveries)
                 if r.key != PROBE]
        assert sorted(t.event_id for t in tasks) == good
        assert {t.webhook_id for t in tasks} == {hook["id"]}
        routed = [update for r in await consumer_records(kafka.bootstrap, topics.eventlog_updates)
                  if isinstance(update := update_decoder.decode(r.value), Routed)]
        assert sorted(u.event_id for u in routed) == good  # none for a dead-lettered event
        assert stack.services["router"].alive


# Failures that end the router before the event's offset is committed -------

async def test_a_failed_send_stops_the_router_and_the_event_is_routed_after_restart(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    async with running(kafka, topics, tmp_path, "ingest", "router") as stack, \
            aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        await webhook(client, receiver, "/h")
        # The fault: `deliveries` is gone, so the router's send fails after
        # HOOKBUS_ROUTER_SEND_TIMEOUT.
        await delete_topic(kafka.bootstrap, topics.deliveries)
        event_id = await client.publish("message.received", text="must not be lost")

        [record] = [r for r in await consumer_records(kafka.bootstrap, topics.events)
                    if event_id.encode() in r.value]
        await assert_stopped_unfinished(kafka.bootstrap, stack, prefix, topics.events,
                                        record.partition, record.offset)

        # The fault removed, the restarted router routes the event.
        await create_topics(kafka.bootstrap, topics)
        stack.start("deliverer")
        stack.restart("router")
        await stack.wait_ready()
        await receiver.wait_for("/h", event_id, timeout=60)
        assert stack.services["router"].alive


async def test_a_failed_dead_letter_write_stops_the_router_and_is_retried_after_restart(
    kafka: Broker, prefix: str, tmp_path: Path
) -> None:
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    async with running(kafka, topics, tmp_path, "router") as stack:
        # The fault: `events.dlq` takes less than the router read at start.
        await set_max_message_bytes(kafka.bootstrap, topics.events_dlq, 20_000)
        poison = b"not an event " * 4_000  # 52 kB: its dead letter is larger still
        await write_events(kafka.bootstrap, topics.events, poison)

        [record] = [r for r in await consumer_records(kafka.bootstrap, topics.events)]
        await assert_stopped_unfinished(kafka.bootstrap, stack, prefix, topics.events,
                                        record.partition, record.offset)

        # Restarted, the router reads the new limit and fits the letter to it.
        stack.restart("router")
        await stack.wait_ready()
        [letter] = await dead_letters(kafka.bootstrap, topics, 1)
        assert "not an event envelope" in letter.reason
        assert (letter.partition, letter.offset) == (record.partition, record.offset)
        assert letter.value_truncated and letter.value_size == len(poison)
        assert letter.value and poison.startswith(letter.value)
        assert stack.services["router"].alive


async def test_a_failed_send_in_a_batch_stops_the_router_before_any_of_it_is_committed(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    async with running(kafka, topics, tmp_path, "ingest", "router") as stack, \
            aiohttp.ClientSession() as http:
        await webhook(Client(http, stack.ingest_url, APP), receiver, "/h")
        # The fault: `events.dlq` takes less than the router read at start, so
        # the poison's dead letter is refused while its batch-mates' tasks are
        # written.
        await set_max_message_bytes(kafka.bootstrap, topics.events_dlq, 20_000)
        good = [f"evt_batch{n}" for n in range(4)]
        poison = b"not an event " * 4_000  # 52 kB: its dead letter is larger still
        offsets = await write_together(
            kafka.bootstrap, topics.events, prefix, event_record(good[0]),
            event_record(good[1]), poison, event_record(good[2]), event_record(good[3]))

        await assert_stopped_unfinished(kafka.bootstrap, stack, prefix, topics.events, 0,
                                        offsets[2])

        # Restarted, the router reads the new limit, fits the letter to it, and
        # routes (again, if need be) everything after the last commit.
        stack.start("deliverer")
        stack.restart("router")
        await stack.wait_ready()
        for event_id in good:
            await receiver.wait_for("/h", event_id, timeout=60)
        [letter] = await dead_letters(kafka.bootstrap, topics, 1)
        assert (letter.partition, letter.offset) == (0, offsets[2])
        await wait_committed(kafka.bootstrap, f"{prefix}router",
                             TopicPartition(topics.events, 0), offsets[-1])
        assert stack.services["router"].alive


# Transactions --------------------------------------------------------------

async def test_events_of_aborted_transactions_are_never_routed(
    stack: Stack, topics: Topics, receiver: Receiver, subscribed: Client
) -> None:
    client = subscribed
    bootstrap = stack.env["HOOKBUS_KAFKA_BOOTSTRAP"]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                transactional_id=f"{topics.prefix}test-batches")
    await producer.start()
    try:
        def record(event_id: str) -> bytes:
            return msgspec.json.encode({"id": event_id, "type": "message.received",
                                        "app_id": APP})

        await producer.begin_transaction()
        await producer.send_and_wait(topics.events, record("evt_aborted"), key=APP.encode())
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topics.events, record("evt_committed"), key=APP.encode())
    finally:
        await producer.stop()
    await receiver.wait_for("/h", "evt_committed")
    after = await client.publish("message.received")
    await receiver.wait_for("/h", after)
    assert "evt_aborted" not in [r.headers["webhook-id"] for r in receiver.on("/h")]
    # Set on the consumer Faust runs, as it runs (read_committed.py).
    assert (f"reading {topics.events} with isolation level read_committed and a prefetch "
            f"backoff of {PREFETCH_BACKOFF_SECONDS} s") in stack.services["router"].log()
