"""Attacks on the router's fair inbox and its wait for the consumer's fetch
(commit 9ab7c47): what the router does while Faust's consumer hands on no
more records (a SIGTERM or a rebalance stops its flow, then waits for every
event the actors hold). Real broker, real router processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from devtools.broker import Broker
from services.common.topics import Topics
from tests.conftest import Receiver
from tests.integration.test_attack_router_batches import (
    padded,
    subscribed,
    unrouted_below_commits,
    until_routed,
    write_backlog,
)
from tests.integration.test_router_failures import create_topics, running

HOOKS = 10  # HOOKBUS_MAX_WEBHOOKS_PER_APP's default: 11 records an event


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


async def test_sigterm_with_a_full_inbox_of_wide_events_stops_promptly(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    # At a SIGTERM Faust stops the consumer's flow and waits for every event
    # the actors hold (up to MAX_HELD each). The consumer then never asks for
    # more, so a wait for it to do so must not be paid once per batch.
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    count = 20_000
    async with running(kafka, topics, tmp_path, "ingest") as stack, \
            aiohttp.ClientSession() as http:
        await subscribed(http, stack, receiver, HOOKS)
        await asyncio.sleep(1.2)
        await write_backlog(kafka.bootstrap, topics.events, count, padded(200))
        router = stack.start("router")
        await until_routed(kafka.bootstrap, topics, 1500, 90)  # both inboxes full by then
        cpu_before = cpu_seconds(router.process.pid)
        started = time.monotonic()
        router.process.send_signal(15)
        cpu_used = 0.0
        while router.process.poll() is None:  # the CPU it burns while draining
            try:
                cpu_used = cpu_seconds(router.process.pid) - cpu_before
            except (FileNotFoundError, ProcessLookupError):
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        code = router.process.wait()
        print(f"SIGTERM to exit {took:.1f} s, {cpu_used:.1f} CPU-s")
        assert code == 0, stack.services["router"].log()[-3000:]
        lost = await unrouted_below_commits(kafka.bootstrap, topics, f"{prefix}router")
        assert not lost, f"{len(lost)} committed and never routed: {lost[:20]}"
        assert took < 8, f"SIGTERM took {took:.1f} s to exit ({cpu_used:.1f} CPU-s)"
        # 0.4 CPU-s at 9ab7c47^ (all held events in a few batches), 2.6 in
        # batches of 32 records (a batch's overhead each)
        assert cpu_used < 1.6, f"draining took {cpu_used:.1f} CPU-s"


async def test_a_router_joining_a_busy_one_gets_its_partitions_promptly(
    kafka: Broker, prefix: str, tmp_path: Path, receiver: Receiver
) -> None:
    # A rebalance waits for every event the routers hold, the group's other
    # members with it: that wait is short and not spent spinning.
    topics = Topics(prefix, retry_delays=(1, 2))
    await create_topics(kafka.bootstrap, topics)
    count = 20_000
    async with running(kafka, topics, tmp_path, "ingest") as stack, \
            aiohttp.ClientSession() as http:
        await subscribed(http, stack, receiver, HOOKS)
        await asyncio.sleep(1.2)
        await write_backlog(kafka.bootstrap, topics.events, count, padded(200))
        stack.start("router")
        await stack.wait_instance_ready("router")
        await until_routed(kafka.bootstrap, topics, 1500, 90)
        started = time.monotonic()
        stack.start("router", name="router-2")
        await stack.wait_instance_ready("router-2", timeout=90)
        took = time.monotonic() - started
        print(f"second router ready after {took:.1f} s")
        assert took < 12, f"the rebalance took {took:.1f} s"
