"""Outcome classification, the retry schedule, commit watermarks and breakers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.deliverer.breaker import Breakers
from services.deliverer.outcomes import Delivered, Failed, Gone, of_response, parse_retry_after
from services.deliverer.retry_policy import GiveUp, Retry, deferral, next_step
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
    assert next_step(SCHEDULE, 1, 0.0, retry_after=60) == Retry(2, 300, 60)
    assert next_step(SCHEDULE, 1, 0.0, retry_after=1) == Retry(2, 5, 5)
    assert next_step(SCHEDULE, 1, 0.0, retry_after=10**9) == Retry(2, 36000, 36000)


def test_a_deferral_keeps_its_attempt_number() -> None:
    assert deferral(SCHEDULE, 3, 0.0, 0.0) == Retry(3, 5, 5)
    assert deferral(SCHEDULE, 3, 0.0, 42.0) == Retry(3, 300, 42)
    assert deferral(SCHEDULE, 8, 0.0, 10**9) == Retry(8, 36000, 36000)
    assert next_step((), 1, 0.0) == GiveUp("no retries configured")
    assert deferral((), 1, 0.0, 0.0) == GiveUp("no retries configured")


@given(st.lists(st.floats(1, 10**5), min_size=1, max_size=8), st.integers(1, 10),
       st.none() | st.floats(0, 10**6))
def test_every_retry_lands_on_a_tier_no_shorter_than_its_wait(schedule, attempt, retry_after):
    step = next_step(schedule, attempt, 0.0, retry_after=retry_after)
    if attempt > len(schedule):
        assert isinstance(step, GiveUp)
        return
    assert isinstance(step, Retry) and step.attempt == attempt + 1
    assert step.tier in schedule and step.due_at <= step.tier
    assert step.due_at >= min(schedule[attempt - 1], max(schedule))


@given(st.lists(st.integers(0, 200), min_size=1, max_size=60, unique=True), st.randoms())
def test_watermark_never_passes_an_unfinished_offset(offsets: list[int], rng: random.Random):
    marks = Watermarks()
    for offset in sorted(offsets):
        marks.started("p", offset)
    order = list(offsets)
    rng.shuffle(order)
    committed = -1
    for n, offset in enumerate(order):
        marks.finished("p", offset)
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
    marks.started("a", 10)
    marks.started("a", 11)
    marks.started("b", 3)
    marks.finished("a", 11)
    marks.finished("b", 3)
    assert marks.committable() == {"a": 10, "b": 4}
    assert marks.committable() == {"a": 10, "b": 4}  # until the commit is acknowledged
    marks.committed({"a": 10, "b": 4})
    assert marks.committable() == {}
    marks.forget(["a"])
    assert marks.in_flight() == 0


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
