"""A bounded stop (services/common/shutdown.py): a step that never returns is
abandoned at its deadline, even one that ignores its cancellation; a failing
step is logged; the steps after either still run; all share one budget."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from services.common import shutdown
from services.common.shutdown import UNWIND, Shutdown, within

log = logging.getLogger("test.shutdown")


async def test_a_step_that_never_returns_is_cancelled_at_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = asyncio.Event()

    async def never() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "test.shutdown"):
        assert await within(0.2, "waiting for ever", never, log) is False
    assert 0.2 <= time.monotonic() - started < 0.2 + UNWIND + 0.2
    assert cancelled.is_set()
    assert "abandoned waiting for ever after 0.2s" in caplog.text


async def test_a_step_that_ignores_its_cancellation_is_left_behind() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # as a close waiting for a peer might

    started = time.monotonic()
    assert await within(0.1, "a stubborn close", stubborn, log) is False
    assert time.monotonic() - started < 0.1 + UNWIND + 0.2
    release.set()  # let it end (the loop would otherwise wait for it at exit)
    await asyncio.sleep(0)


async def test_a_failing_step_is_logged_and_the_next_ones_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def fails() -> None:
        raise RuntimeError("broker gone")

    async def closes() -> None:
        ran.append("closed")

    stop = Shutdown(5.0, log)
    with caplog.at_level(logging.WARNING, "test.shutdown"):
        assert await stop.step("the commit", fails, 1.0) is False
        assert await stop.step("the close", closes, 1.0) is True
    assert ran == ["closed"]
    assert stop.unfinished == ["the commit"]
    assert "the commit failed: RuntimeError('broker gone')" in caplog.text


async def test_steps_share_the_budget_and_a_late_one_still_gets_its_minimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutdown, "MIN_STEP", 0.1)
    given: list[float] = []
    real_within = shutdown.within

    async def recording(seconds: float, *args: object) -> bool:
        given.append(seconds)
        return await real_within(seconds, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shutdown, "within", recording)

    async def never() -> None:
        await asyncio.Event().wait()

    async def quick() -> None:
        pass

    stop = Shutdown(0.5, log)
    await stop.step("first", never, 0.2)     # its own limit
    await stop.step("second", never, 1.0)    # what is left of the budget
    await stop.step("third", quick, 1.0)     # the budget is spent: the minimum
    assert given[0] == 0.2
    assert 0.15 < given[1] <= 0.3
    assert given[2] == 0.1
    assert stop.unfinished == ["first", "second"]
