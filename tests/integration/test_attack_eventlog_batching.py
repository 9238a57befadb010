"""Attacks on the event log's filing batches (issue 13, services/eventlog/batching.py)
on the real broker, with the event log as a real process: a SIGTERM while a
backlog is being filed, batch after batch, and a second instance joining (a
rebalance) meanwhile. Nothing acknowledged may be missing from the table: after
a restart, every record written to `eventlog.updates` is listed. Both pass on
the code they were written against (they guard the guarantee)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer, TopicPartition

from devtools.broker import Broker
from devtools.processes import Stack
from schemas.eventlog import Routed, update_encoder
from services.common.topics import Topics, eventlog_app_id
from services.eventlog.keys import partition_of
from tests.conftest import PARTITIONS, auth, group_offsets, make_stack

APP = "app_batching"
BACKLOG = 6000
REBALANCE_BACKLOG = 30000


async def write_backlog(producer: AIOKafkaProducer, topics: Topics, count: int,
                        app: str = APP) -> list[str]:
    """`count` Routed records of `app` (no webhook: one event each), all acknowledged."""
    now = datetime.now(UTC)
    ids = [f"evt_{app[4:]}{n:06d}" for n in range(count)]
    sent = [await producer.send(topics.eventlog_updates, update_encoder.encode(Routed(
        app_id=app, event_id=event_id, event_type="message.received", created_at=now,
        source="events", partition=0, offset=n)), key=app.encode())
        for n, event_id in enumerate(ids)]
    await asyncio.gather(*sent)
    return ids


async def filed(http: aiohttp.ClientSession, url: str) -> float:
    """The event log's count of records filed (any outcome), 0 until it answers."""
    try:
        async with http.get(url + "/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return 0.0
    return sum(float(n) for n in re.findall(
        r'^hookbus_eventlog_updates_total\{outcome="[^"]+"\} (\S+)$', text, re.M))


async def listed(http: aiohttp.ClientSession, url: str, app: str = APP) -> set[str] | None:
    """Every event id the event log lists for `app`, or None while it cannot answer."""
    found: set[str] = set()
    cursor = None
    while True:
        query = "?limit=250" + (f"&cursor={cursor}" if cursor else "")
        try:
            async with http.get(f"{url}/v1/apps/{app}/events{query}",
                                headers=auth(app)) as response:
                if response.status != 200:
                    return None
                page = await response.json()
        except aiohttp.ClientError:
            return None
        found |= {e["id"] for e in page["events"]}
        cursor = page.get("next")
        if not cursor:
            return found


async def committed(bootstrap: str, topics: Topics, partition: int) -> int:
    offsets = await group_offsets(bootstrap, eventlog_app_id(topics.prefix))
    return offsets.get(TopicPartition(topics.eventlog_updates, partition), -1)


async def all_listed(http: aiohttp.ClientSession, stack: Stack, ids: dict[str, list[str]],
                     timeout: float = 120) -> dict[str, set[str]]:
    """What is listed of each app's ids, once all are (or at the timeout): from
    whichever instance answers for the app."""
    deadline = time.monotonic() + timeout
    last: dict[str, set[str]] = {app: set() for app in ids}
    while time.monotonic() < deadline:
        for app in ids:
            for url in stack.eventlog_urls:
                got = await listed(http, url, app)
                if got is not None and len(got) >= len(last[app]):
                    last[app] = got
        if all(set(ids[app]) <= last[app] for app in ids):
            return last
        await asyncio.sleep(0.5)
    return last


def missing(ids: dict[str, list[str]], got: dict[str, set[str]]) -> list[str]:
    return sorted(i for app in ids for i in set(ids[app]) - got[app])


async def test_a_sigterm_while_a_backlog_is_filed_loses_nothing(
        kafka: Broker, topics: Topics, tmp_path: Path, producer: AIOKafkaProducer) -> None:
    ids = await write_backlog(producer, topics, BACKLOG)
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    stack.start("eventlog")
    try:
        async with aiohttp.ClientSession() as http:
            url = stack.eventlog_urls[0]
            deadline = time.monotonic() + 90
            while await filed(http, url) < 100:  # batches are being filed
                assert stack.services["eventlog"].alive, stack.services["eventlog"].log()[-3000:]
                assert time.monotonic() < deadline, stack.services["eventlog"].log()[-3000:]
                await asyncio.sleep(0.01)
            code = await asyncio.to_thread(stack.terminate, "eventlog", 60)
            log = stack.services["eventlog"].log()
            assert code == 0, log[-4000:]
            offset = await committed(kafka.bootstrap, topics, partition_of(APP, PARTITIONS))
            stack.restart("eventlog")
            await stack.wait_instance_ready("eventlog", 90, exited_fails=True)
            lost = missing({APP: ids}, await all_listed(http, stack, {APP: ids}))
            assert not lost, (f"{len(lost)} acknowledged records never filed (committed "
                              f"offset {offset} at the SIGTERM), e.g. {lost[:5]}")
    finally:
        stack.stop()


async def test_a_rebalance_while_a_backlog_is_filed_loses_nothing(
        kafka: Broker, topics: Topics, tmp_path: Path, producer: AIOKafkaProducer) -> None:
    # One app per partition: the second instance takes some of them over.
    apps: list[str] = []
    n = 0
    while len(apps) < PARTITIONS:
        app = f"app_reb{n}"
        if partition_of(app, PARTITIONS) not in [partition_of(a, PARTITIONS) for a in apps]:
            apps.append(app)
        n += 1
    ids = {app: await write_backlog(producer, topics, REBALANCE_BACKLOG // PARTITIONS, app)
           for app in apps}
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    stack.start("eventlog", "eventlog-1")
    try:
        async with aiohttp.ClientSession() as http:
            url = stack.eventlog_urls[0]
            deadline = time.monotonic() + 90
            while await filed(http, url) < 100:
                assert time.monotonic() < deadline, stack.services["eventlog-1"].log()[-3000:]
                await asyncio.sleep(0.01)
            stack.start("eventlog", "eventlog-2")
            await stack.wait_instance_ready("eventlog-2", 90, exited_fails=True)
            # The second joined while the first was still filing (about 19,000
            # of 30,000 filed when it was ready, here).
            assert await filed(http, url) < REBALANCE_BACKLOG
            got = await all_listed(http, stack, ids, timeout=150)
            lost = missing(ids, got)
            logs = {name: s.log()[-3000:] for name, s in stack.services.items()}
            assert not lost, (f"{len(lost)} records never filed, e.g. {lost[:5]}", logs)
            assert all(s.alive for s in stack.services.values()), logs
    finally:
        stack.stop()
