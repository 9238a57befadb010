"""The deliverer's stop is bounded (issue 13): a broker that stops answering
while the deliverer stops (here: the broker's JVM frozen with SIGSTOP) holds up
the consumer's LeaveGroup for its request timeout (40 s), longer than any grace
period. Each stop step has a deadline: the LeaveGroup is abandoned, logged, and
the deliverer still exits 0 with its last line. The broker is one of the test's
own: a frozen broker is fenced by its controller, which the session's must not be."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devtools.broker import Broker, free_port
from devtools.processes import Stack
from services.common.topics import Topics, ensure_topics
from services.deliverer.app import CLOSE_BUDGET
from tests.conftest import make_stack

GRACE = 30  # Kubernetes' default, and the tests' stop timeout


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    broker = Broker(tmp_path / "kafka", free_port(), free_port())
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        with_signal(broker, signal.SIGCONT)
        await asyncio.to_thread(broker.stop)


async def stack_on(broker: Broker, tmp_path: Path) -> tuple[Topics, Stack]:
    """Topics of a fresh prefix on `broker`, and a stack (not started) on them."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.", retry_delays=(1, 2))
    await ensure_topics(broker.bootstrap, topics.specs(), partitions=3)
    return topics, make_stack(broker.bootstrap, topics.prefix, tmp_path)


def with_signal(broker: Broker, signum: int) -> None:
    try:
        os.kill(broker.pid, signum)
    except (ProcessLookupError, AssertionError):  # already gone
        pass


async def test_a_stop_step_that_never_returns_is_abandoned(
    own_broker: Broker, tmp_path: Path
) -> None:
    _, stack = await stack_on(own_broker, tmp_path)
    stack.start("deliverer")
    try:
        await stack.wait_ready()
        with_signal(own_broker, signal.SIGSTOP)
        started = time.monotonic()
        code = await asyncio.to_thread(stack.terminate, "deliverer", GRACE)
        took = time.monotonic() - started
    finally:
        with_signal(own_broker, signal.SIGCONT)
        stack.stop()

    log = stack.services["deliverer"].log()
    assert code == 0, log[-3000:]
    # The drain has nothing to wait for; then the close budget, a few short
    # steps past it, and the interpreter's exit.
    assert took < CLOSE_BUDGET + 6, (took, log[-3000:])
    assert "abandoned leaving the consumer group" in log, log[-3000:]
    assert "deliverer stopped (unfinished: leaving the consumer group" in log, log[-3000:]
