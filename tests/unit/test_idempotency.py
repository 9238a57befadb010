"""Idempotency keys, pure: the derived ids, the windows, and the map of keys
that every ingest replica follows (services/ingest/idempotency.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.idempotency import IdempotencyRecord
from services.ingest.idempotency import (
    IdempotencyKeys,
    batch_event_id,
    event_id_for,
    record_key,
    window_of,
)

TTL = 100.0


@pytest.mark.parametrize(("now", "ttl", "window"), [
    (0.0, 100.0, 0),
    (99.999, 100.0, 0),
    (100.0, 100.0, 1),
    (1_700_000_000.5, 86_400.0, 19_675),
])
def test_window_of(now: float, ttl: float, window: int) -> None:
    assert window_of(now, ttl) == window


def test_derived_ids_are_stable_and_distinct() -> None:
    assert event_id_for("app_1", "k", 7) == event_id_for("app_1", "k", 7)
    assert event_id_for("app_1", "k", 7).startswith("evt_")
    ids = {
        event_id_for("app_1", "k", 7),
        event_id_for("app_2", "k", 7),
        event_id_for("app_1", "k2", 7),
        event_id_for("app_1", "k", 8),
        *(batch_event_id("app_1", "k", 7, n) for n in range(3)),
        batch_event_id("app_1", "k", 8, 0),
    }
    assert len(ids) == 8


def test_ids_cannot_be_forged_by_moving_separators() -> None:
    assert event_id_for("a", "b\0c", 1) != event_id_for("a\0b", "c", 1)
    assert record_key("a", "b\0c") != record_key("a\0b", "c")
    assert record_key("app_1", "k") != record_key("app_1", "k", batch=True)


@given(first=st.floats(0, 4e9), later=st.floats(0, 4e9), ttl=st.floats(1, 1e6))
def test_a_key_reused_after_its_ttl_lands_in_a_later_window(
    first: float, later: float, ttl: float
) -> None:
    if later >= first + ttl:
        assert window_of(later, ttl) > window_of(first, ttl)


def record(event_id: str, expires_at: float, window: int = 0, count: int = 1) -> IdempotencyRecord:
    return IdempotencyRecord(event_id=event_id, expires_at=datetime.fromtimestamp(expires_at, UTC),
                             window=window, count=count)


@given(now=st.floats(0, 4e9), ttl=st.floats(0.001, 1e6))
def test_a_record_expires_no_earlier_than_its_ttl(now: float, ttl: float) -> None:
    written = IdempotencyKeys().claim("app_1", "k", now, ttl).record("evt_a", 1, now, ttl)
    assert written.expires_at.timestamp() >= now + ttl


def test_a_fresh_key_gets_the_window_of_now() -> None:
    keys = IdempotencyKeys()
    claim = keys.claim("app_1", "k", now=250.0, ttl=TTL)
    assert claim.known is None and claim.window == 2
    assert claim.digest == record_key("app_1", "k")


def test_two_replicas_racing_on_a_fresh_key_derive_the_same_id() -> None:
    one, other = IdempotencyKeys(), IdempotencyKeys()
    assert one.claim("app_1", "k", 250.0, TTL).window == other.claim("app_1", "k", 299.0, TTL).window


def test_a_known_key_answers_its_record_until_it_expires_across_windows() -> None:
    writer, follower = IdempotencyKeys(), IdempotencyKeys()
    claim = writer.claim("app_1", "k", now=290.0, ttl=TTL)  # late in window 2
    written = claim.record(event_id_for("app_1", "k", claim.window), 1, now=290.0, ttl=TTL)
    follower.apply(claim.digest.encode(), msgspec.json.encode(written), now=290.5)

    later = follower.claim("app_1", "k", now=385.0, ttl=TTL)  # window 3, within the TTL
    assert later.known is not None and later.window == 2
    assert (later.known.event_id, later.known.count) == (written.event_id, 1)
    assert follower.claim("app_1", "k", now=390.0, ttl=TTL).known is None  # the TTL passed
    after = follower.claim("app_1", "k", now=390.0, ttl=TTL)
    assert after.window == 3 and event_id_for("app_1", "k", after.window) != written.event_id


def test_a_batch_claim_keeps_the_window_it_was_written_in() -> None:
    keys = IdempotencyKeys()
    claim = keys.claim("app_1", "k", now=199.0, ttl=TTL, batch=True)
    keys.put(claim.digest, claim.record("evt_a", 3, now=199.0, ttl=TTL), now=199.0)
    again = keys.claim("app_1", "k", now=201.0, ttl=TTL, batch=True)
    assert again.window == claim.window == 1 and again.known is not None
    assert again.known.count == 3
    assert keys.claim("app_1", "k", now=201.0, ttl=TTL).known is None  # single: another key


A, B, C = (record_key("app_1", name) for name in "abc")


def test_expired_keys_are_forgotten_and_never_loaded() -> None:
    keys = IdempotencyKeys()
    keys.put(A, record("evt_a", 100.0), now=0.0)
    keys.put(B, record("evt_b", 200.0), now=0.0)
    keys.put(C, record("evt_c", 50.0), now=60.0)  # already expired when followed
    assert len(keys) == 2
    assert keys.get(A, now=150.0) is None
    assert len(keys) == 1 and keys.get(B, now=150.0) is not None


def test_the_map_is_bounded_oldest_first() -> None:
    keys = IdempotencyKeys(max_keys=2)
    for digest in (A, B, C):
        keys.put(digest, record("evt_x", 1000.0), now=0.0)
    assert len(keys) == 2 and keys.evicted == 1
    assert keys.get(A, 0.0) is None and keys.get(C, 0.0) is not None


def test_bad_records_are_skipped() -> None:
    keys = IdempotencyKeys()
    good = msgspec.json.encode(record("evt_a", 100.0))
    keys.apply(A.encode(), b"not json", now=0.0)
    keys.apply(None, good, now=0.0)
    keys.apply(b"not-a-digest", good, now=0.0)
    keys.apply(A.encode(), b'{"event_id": 3}', now=0.0)
    assert len(keys) == 0
    keys.apply(A.encode(), good, now=0.0)
    assert len(keys) == 1
    keys.apply(A.encode(), None, now=0.0)  # a tombstone forgets the key
    assert len(keys) == 0


def test_old_records_without_window_and_count_decode() -> None:
    keys = IdempotencyKeys()
    keys.apply(A.encode(), b'{"event_id": "evt_a", "expires_at": "2030-01-01T00:00:00Z", "x": 1}',
               now=0.0)
    found = keys.get(A, now=0.0)
    assert found is not None and (found.event_id, found.window, found.count) == ("evt_a", 0, 1)
