"""The event log's filing batches (services/eventlog/batching.py), on a Faust
agent's in-memory test context: an idle stream does not wake up (Faust's own
`take_events` waits `within` again and again: ~10 times in 0.5 s at 50 ms), a
lone event comes within `within` of its arrival, a batch never holds more than
`max_`, and events are acknowledged once their batch is done."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest

from services.eventlog.batching import take_events_soon

WITHIN = 0.05


@dataclass
class Filing:
    put: Any
    batches: list[tuple[float, list[int]]] = field(default_factory=list)
    acked: list[bool] = field(default_factory=list)
    waits: int = 0


@pytest.fixture
async def filing() -> AsyncIterator[Filing]:
    app = faust.App(f"t-batching-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1",
                    store="memory://")
    seen = Filing(put=None)

    @app.agent(app.channel())
    async def agent(stream: faust.StreamT) -> None:
        manual = stream.noack()
        wait = manual.wait_for_stopped

        async def counted(*args: Any, **kwargs: Any) -> bool:
            seen.waits += 1
            return await wait(*args, **kwargs)

        manual.wait_for_stopped = counted  # type: ignore[method-assign]
        async for batch in take_events_soon(manual, 3, within=WITHIN):
            seen.batches.append((time.monotonic(), [event.value for event in batch]))
            await asyncio.sleep(0.01)  # filing takes a moment: nothing is added meanwhile
            seen.acked.extend(event.message.acked for event in batch)

    async with agent.test_context() as context:
        seen.put = context.put
        yield seen
    # The consumer the test context made (never started) holds its thread's own
    # event loop, which nothing runs or closes.
    app.consumer._thread.thread_loop.close()


async def test_an_idle_stream_does_not_wake_up(filing: Filing) -> None:
    await asyncio.sleep(0.5)
    assert filing.waits <= 1
    assert filing.batches == []


async def test_a_lone_event_comes_within_its_time(filing: Filing) -> None:
    await asyncio.sleep(0.1)
    sent = time.monotonic()
    await filing.put(1)
    async with asyncio.timeout(2):
        while not filing.batches:
            await asyncio.sleep(0.005)
    came, values = filing.batches[0]
    assert values == [1]
    assert came - sent < WITHIN + 0.1


async def test_batches_hold_at_most_max_and_are_acked_after(filing: Filing) -> None:
    for n in range(7):
        await filing.put(n)
    async with asyncio.timeout(2):
        while sum(len(values) for _, values in filing.batches) < 7:
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert [values for _, values in filing.batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert filing.acked == [False] * 7  # not while their batch was being filed
    await asyncio.sleep(0.1)
    assert filing.waits <= 2 * len(filing.batches) + 1
