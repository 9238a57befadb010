"""Attacks on the router's pure parts (commit 5de91c0): each failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import EventDeadLetter
from services.router.planning import dead_letter_record, record_bytes

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
