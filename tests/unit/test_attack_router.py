"""Attacks on the router's pure parts (commit 5de91c0): each failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.deliveries import DeliveryTask
from schemas.events import EventDeadLetter
from services.router.matching import SubscriptionIndex
from services.router.planning import Routed, Unroutable, dead_letter_record, plan, record_bytes

NOW = datetime(2026, 11, 22, 18, 15, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60_000), st.binary(max_size=5_000) | st.none(), st.integers(2_000, 40_000))
def test_a_dead_letter_fits_its_topic_whatever_the_size_of_the_key(
    key_size: int, value: bytes | None, limit: int
) -> None:
    # `events` may hold a record whose key alone is larger than the most the
    # router may write to `events.dlq`; its letter must still fit.
    key = b"k" * key_size
    sent_key, encoded = dead_letter_record(
        reason="not an event envelope", topic="t.events", partition=0, offset=7, key=key,
        value=value, failed_at=NOW, limit=limit)
    assert record_bytes(sent_key, encoded) <= limit
    letter = msgspec.json.decode(encoded, type=EventDeadLetter)
    assert sent_key is not None and key.startswith(sent_key)
    assert letter.key_size == key_size
    assert letter.key_truncated == (sent_key != key)
    assert (value or b"").startswith(letter.value)


def test_a_key_that_fits_is_kept_as_read() -> None:
    key, encoded = dead_letter_record(
        reason="r", topic="e", partition=0, offset=1, key=b"app_1", value=b"x" * 50_000,
        failed_at=NOW, limit=10_000)
    letter = msgspec.json.decode(encoded, type=EventDeadLetter)
    assert key == b"app_1" and letter.value_truncated and not letter.key_truncated
    assert dead_letter_record(reason="r", topic="e", partition=0, offset=1, key=None,
                              value=b"", failed_at=NOW, limit=10_000)[0] is None


def _planned(created_at: str) -> Routed | Unroutable:
    index = SubscriptionIndex()
    index.put("wh_1", "app_1", ["*"])
    value = msgspec.json.encode({"type": "message.received", "app_id": "app_1",
                                 "created_at": created_at})
    return plan(value, partition=0, offset=1, timestamp_ms=0, index=index)


def test_a_created_at_without_offset_is_read_as_utc() -> None:
    # Naive, it broke the deliverer: `now(UTC) - created_at` is a TypeError.
    routed = _planned("2026-11-22T18:15:00")
    assert isinstance(routed, Routed)
    assert routed.event.created_at == datetime(2026, 11, 22, 18, 15, tzinfo=UTC)
    [(_, task)] = routed.tasks
    decoded = msgspec.json.decode(task, type=DeliveryTask)
    assert decoded.event_created_at.tzinfo is not None
    assert msgspec.json.decode(bytes(decoded.body))["created_at"] == "2026-11-22T18:15:00Z"


def test_a_created_at_out_of_range_in_utc_is_dead_lettered() -> None:
    for created_at in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"):
        outcome = _planned(created_at)
        assert isinstance(outcome, Unroutable) and "out of range" in outcome.reason
    assert isinstance(_planned("2026-11-22T20:15:00+02:00"), Routed)
