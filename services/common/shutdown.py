"""A bounded stop: each step of a service's shutdown gets a deadline, all of
them one budget, and a step past its deadline is abandoned (cancelled, not
waited for) with a log line saying what was left undone.

Why: a Kafka client's `stop()` can wait longer than any grace period. Closing
a TLS connection waits for the broker's close_notify, up to the event loop's
SSL shutdown timeout (uvloop: 30 s). A broker that reads the close_notify
together with a request sent just before it (loaded, it is slow to read)
seems to answer the request and never close: its log shows no close until the
client's own TCP close 30 s later. The deliverer's webhooks follower waited
there, in `consumer.stop()`, and the deliverer was SIGKILLed (test_kafka_security). A LeaveGroup or a commit to
a broker that does not answer waits its request timeout (40 s) or retries.
What a step abandons is never a promise: offsets are committed only for
finished work, before the clients close, so the worst an abandoned step costs
is work done again after the restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

# A step whose turn comes after the budget is spent still gets this long:
# closing sockets and servers usually takes milliseconds.
MIN_STEP = 0.5
# How long a cancelled step may take to unwind before it is left behind.
UNWIND = 0.2


async def within(seconds: float, what: str, step: Callable[[], Awaitable[object]],
                 log: logging.Logger) -> bool:
    """Run `step()` for at most `seconds`. True when it finished; False when it
    failed or was abandoned (both logged). Never raises but for the caller's
    own cancellation, and never waits for an abandoned step to end."""
    started = time.monotonic()
    task = asyncio.ensure_future(step())
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=UNWIND)
        if not task.done():  # do not let it report its end to no one
            task.add_done_callback(_quiet)
        log.warning("stopping: abandoned %s after %.1fs (its deadline)", what,
                    time.monotonic() - started)
        return False
    if task.cancelled():
        log.warning("stopping: %s was cancelled", what)
        return False
    if (exc := task.exception()) is not None:
        log.warning("stopping: %s failed: %r", what, exc)
        return False
    return True


def _quiet(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


class Shutdown:
    """The steps of one stop, sharing `budget` seconds: a step gets at most its
    own limit, at most what is left of the budget, and at least `MIN_STEP`."""

    def __init__(self, budget: float, log: logging.Logger) -> None:
        self._end = time.monotonic() + budget
        self._log = log
        self.unfinished: list[str] = []  # the steps that failed or were abandoned

    async def step(self, what: str, step: Callable[[], Awaitable[object]],
                   limit: float) -> bool:
        left = self._end - time.monotonic()
        if not await within(max(MIN_STEP, min(limit, left)), what, step, self._log):
            self.unfinished.append(what)
            return False
        return True
