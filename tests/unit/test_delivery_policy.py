"""Outcome classification, the retry schedule and its hops through the tiers,
commit watermarks and breakers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.deliverer.breaker import Breakers
from services.deliverer.outcomes import (
    Delivered,
    Failed,
    Gone,
    Refused,
    of_response,
    parse_retry_after,
)
from services.deliverer.retry_policy import GiveUp, Retry, deferral, hop, next_step
from services.deliverer.watermarks import Watermarks

NOW = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize(("status", "kind"), [
    (200, Delivered), (204, Delivered), (299, Delivered), (301, Failed), (302, Failed),
    (304, Failed), (400, Failed), (401, Failed), (404, Failed), (410, Gone), (429, Failed),
    (500, Failed), (503, Failed), (100, Failed),
])
def test_only_2xx_delivers(status: int, kind: type) -> None:
    assert isinstance(of_response(status, "", None, NOW), kind)


def test_retry_after_is_read_only_on_429_and_503() -> None:
    assert of_response(429, "", "120", NOW) == Failed("HTTP 429", 429, 120.0)
    assert of_response(503, "Busy", "7", NOW) == Failed("HTTP 503 Busy", 503, 7.0)
    assert of_response(500, "", "120", NOW) == Failed("HTTP 500", 500, None)


@pytest.mark.parametrize(("header", "seconds"), [
    ("0", 0.0), ("30", 30.0), (None, None), ("", None), ("soon", None), ("-5", None),
    ((NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), 90.0),
    ((NOW - timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), 0.0),
])
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_the_schedule_table() -> None:
    steps = [next_step(SCHEDULE, attempt, 1000.0) for attempt in range(1, 9)]
    assert steps[:7] == [Retry(a + 1, d, 1000.0 + d) for a, d in enumerate(SCHEDULE, start=1)]
    assert isinstance(steps[7], GiveUp)


def test_retry_after_is_honoured_up_to_the_longest_delay() -> None:
    # 60s: hops through the 5s tier (the longest not longer than the wait) until due.
    assert next_step(SCHEDULE, 1, 0.0, retry_after=60) == Retry(2, 5, 5, 60)
    assert next_step(SCHEDULE, 1, 0.0, retry_after=1) == Retry(2, 5, 5)
    assert next_step(SCHEDULE, 1, 0.0, retry_after=10**9) == Retry(2, 36000, 36000)
    assert next_step(SCHEDULE, 2, 0.0, retry_after=400) == Retry(3, 300, 300, 400)


def test_a_deferral_keeps_its_attempt_number() -> None:
    assert deferral(SCHEDULE, 3, 0.0, 0.0) == Retry(3, 5, 5)
    assert deferral(SCHEDULE, 3, 0.0, 42.0) == Retry(3, 5, 5, 42)
    assert deferral(SCHEDULE, 8, 0.0, 10**9) == Retry(8, 36000, 36000, 10**9)
    assert deferral(SCHEDULE, 1, 0.0, -3.0) == Retry(1, 5, 5)
    assert next_step((), 1, 0.0) == GiveUp("no retries configured")
    assert deferral((), 1, 0.0, 0.0) == GiveUp("no retries configured")


@pytest.mark.parametrize(("wait", "hops"), [
    # (wait, the tiers it passes through); a remainder under 5s rounds up to 5s.
    (5, [5]), (7, [5, 5]), (300, [300]), (301, [300, 5]), (900, [300, 300, 300]),
    (0, [5]), (36000, [36000]), (40000, [36000, 1800, 1800, 300] + [5] * 20),
])
def test_a_long_wait_is_made_of_hops(wait: float, hops: list[float]) -> None:
    now, taken = 0.0, []
    step = hop(SCHEDULE, 1, now, wait)
    while True:
        assert isinstance(step, Retry) and step.due_at == now + step.tier
        taken.append(step.tier)
        now = step.due_at
        if step.not_before is None:
            break
        step = hop(SCHEDULE, 1, now, step.not_before - now)
    assert taken == hops


@given(st.lists(st.sampled_from([1.0, 2.0, 5.0, 60.0, 300.0, 3600.0]), min_size=1, max_size=6),
       st.floats(0, 3), st.floats(0, 10**6))
def test_hops_end_no_sooner_than_the_wait_and_within_one_short_tier(schedule, share, now):
    """Each tier record is due exactly its tier's delay after it is written, and
    the chain of hops ends at the wait's end or at most one shortest tier later."""
    shortest, wait = min(schedule), share * max(schedule)
    start, step = now, hop(schedule, 2, now, wait)
    for _ in range(10**4):
        assert isinstance(step, Retry) and step.attempt == 2
        assert step.tier in schedule and step.due_at == now + step.tier
        assert step.not_before is None or step.not_before > step.due_at
        now = step.due_at
        if step.not_before is None:
            break
        step = hop(schedule, 2, now, step.not_before - now)
    else:
        pytest.fail("the hops never end")
    assert start + wait - 0.01 <= now <= start + max(wait, 0) + shortest + 0.01


@given(st.lists(st.integers(0, 200), min_size=1, max_size=60, unique=True), st.randoms())
def test_watermark_never_passes_an_unfinished_offset(offsets: list[int], rng: random.Random):
    marks = Watermarks()
    generation = 0
    for offset in sorted(offsets):
        generation = marks.started("p", offset)
    order = list(offsets)
    rng.shuffle(order)
    committed = -1
    for n, offset in enumerate(order):
        assert marks.finished("p", offset, generation)
        unfinished = set(order[n + 1:])
        mark = marks.committable().get("p", committed)
        marks.committed({"p": mark})
        assert mark >= committed
        committed = mark
        assert all(o >= committed for o in unfinished)
    assert committed == max(offsets) + 1
    assert marks.in_flight() == 0


def test_partitions_are_independent_and_forgotten() -> None:
    marks = Watermarks()
    a = marks.started("a", 10)
    assert marks.started("a", 11) == a
    b = marks.started("b", 3)
    assert a != b
    marks.finished("a", 11, a)
    marks.finished("b", 3, b)
    assert marks.committable() == {"a": 10, "b": 4}
    assert marks.committable() == {"a": 10, "b": 4}  # until the commit is acknowledged
    marks.committed({"a": 10, "b": 4})
    assert marks.committable() == {}
    marks.forget(["a"])
    assert marks.in_flight() == 0


def test_a_late_finish_of_a_revoked_partition_changes_nothing() -> None:
    """An attempt that outlives its partition's revocation: its finish is
    ignored, even when the partition is assigned here again meanwhile."""
    marks = Watermarks()
    old = marks.started("p", 5)
    marks.forget(["p"])
    assert not marks.is_current("p", old)
    assert not marks.finished("p", 5, old)  # no KeyError, nothing to commit
    assert marks.committable() == {}
    new = marks.started("p", 5)  # assigned again: the record is read again
    assert new != old and marks.is_current("p", new)
    assert not marks.finished("p", 5, old)  # the old attempt ends now
    assert marks.committable() == {"p": 5}  # the new one is still unfinished
    assert marks.finished("p", 5, new)
    assert marks.committable() == {"p": 6}


def test_breaker_opens_probes_and_closes() -> None:
    breakers = Breakers(threshold=3, cooldown=10, max_cooldown=40)
    for _ in range(3):
        assert breakers.allows("t", 0)
        breakers.failed("t", 0)
    assert not breakers.allows("t", 5) and breakers.open_count(5) == 1
    assert breakers.open_for("t", 5) == 5 and breakers.open_for("other", 5) == 0
    assert breakers.allows("t", 11)          # the probe
    assert not breakers.is_open("t", 11)     # reading does not take another
    assert not breakers.allows("t", 11)      # only one
    breakers.failed("t", 11)                 # trips again, for twice as long
    assert not breakers.allows("t", 30) and breakers.allows("t", 32)
    breakers.succeeded("t")
    assert breakers.allows("t", 32) and breakers.open_count(32) == 0
    assert breakers.allows("other", 0)


@pytest.mark.parametrize(("outcome", "next_may_probe", "open_again"), [
    (Refused("target resolves to a private address"), True, False),  # released, not judged
    (Delivered(204), True, False),                                    # closed
    (Failed("HTTP 500", 500), False, True),                           # tripped again
    (Gone("HTTP 410"), False, True),
])
def test_every_probe_ends(outcome, next_may_probe: bool, open_again: bool) -> None:
    """A probe that ends Refused no longer leaves the breaker probing forever."""
    breakers = Breakers(threshold=1, cooldown=10)
    breakers.failed("t", 0)
    assert breakers.allows("t", 10) and not breakers.allows("t", 10)  # the probe is out
    breakers.settle("t", outcome, 10)
    assert breakers.is_open("t", 10) is open_again
    assert breakers.allows("t", 10) is next_may_probe


def test_a_released_probe_lets_the_next_task_probe() -> None:
    breakers = Breakers(threshold=1, cooldown=10)
    breakers.failed("t", 0)
    assert breakers.allows("t", 10)
    breakers.release("t")  # e.g. the attempt never ran
    assert breakers.allows("t", 10)
