"""Keys of the event log's table (services/eventlog/keys.py): byte order is the
order the API lists in, prefixes select exactly what they should, cursors are
opaque and checked, and the owner of an app is the partition Kafka puts it in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.eventlog.keys import (
    BadKey,
    attempt_key,
    attempts_prefix,
    cursor_of,
    deliveries_prefix,
    delivery_key,
    event_key,
    events_prefix,
    id_key,
    inverted,
    key_of_cursor,
    partition_of,
    prefix_end,
    split_event_key,
    time_key,
    time_of,
)

ids = st.text(min_size=1, max_size=40)  # any code points: NUL, surrogates aside, anything
ms = st.integers(int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000),
                 int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000))


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@given(ids.filter(encodable), st.lists(st.tuples(ms, ids.filter(encodable)), min_size=2,
                                          max_size=30))
def test_an_apps_events_scan_newest_first(app_id: str, events: list[tuple[int, str]]) -> None:
    keys = sorted(event_key(app_id, t, e) for t, e in events)
    times = [split_event_key(k)[1] for k in keys]
    assert times == sorted(times, reverse=True)
    assert all(k.startswith(events_prefix(app_id)) for k in keys)


@given(ids.filter(encodable), ids.filter(encodable), ms, ids.filter(encodable))
def test_a_prefix_selects_one_app_whatever_the_ids_hold(app: str, other: str, t: int,
                                                        event_id: str) -> None:
    """`a` and `a\\0x`, `ab` and `a`: no app's keys start with another app's prefix."""
    if app == other:
        return
    assert not event_key(other, t, event_id).startswith(events_prefix(app))
    assert not delivery_key(other, event_id, "wh").startswith(deliveries_prefix(app, event_id))


@given(ids.filter(encodable), ms, ids.filter(encodable))
def test_event_keys_split_back(app_id: str, t: int, event_id: str) -> None:
    assert split_event_key(event_key(app_id, t, event_id)) == (app_id, t, event_id)
    assert time_of(inverted(t)) == t


def test_an_events_deliveries_are_not_another_events() -> None:
    """Event `e` and event `e\\x00…`, webhook ids starting alike: prefixes hold."""
    mine = deliveries_prefix("app", "e")
    assert delivery_key("app", "e", "wh_1").startswith(mine)
    assert not delivery_key("app", "e\x00x", "wh_1").startswith(mine)
    assert not delivery_key("app", "ee", "wh_1").startswith(mine)
    rows = attempts_prefix("app", "e", "wh_1")
    assert attempt_key("app", "e", "wh_1", 2, 0).startswith(rows)
    assert not attempt_key("app", "e", "wh_10", 2, 0).startswith(rows)
    assert sorted([attempt_key("app", "e", "wh_1", n, s) for n, s in ((2, 1), (1, 0), (2, 0))]) \
        == [attempt_key("app", "e", "wh_1", n, s) for n, s in ((1, 0), (2, 0), (2, 1))]


def test_the_sweep_index_is_oldest_first_and_events_by_id_are_one_key() -> None:
    assert time_key(-5, b"x") < time_key(0, b"x") < time_key(10**12, b"a")
    assert id_key("app", "evt_1") != id_key("app", "evt_10")
    assert not id_key("app", "evt_10").startswith(id_key("app", "evt_1")[:-1] + b"\x00")


@pytest.mark.parametrize("bad", [
    lambda: event_key("", 0, "e"), lambda: event_key("a", 0, ""),
    lambda: event_key("a" * 65536, 0, "e"), lambda: inverted(1 << 62),
    lambda: attempt_key("a", "e", "w", -1, 0), lambda: split_event_key(b"E\x00\x05ab"),
    lambda: split_event_key(b"I" + b"\x00\x01a"), lambda: prefix_end(b"\xff\xff"),
])
def test_what_cannot_be_a_key_is_refused(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadKey):
        bad()


@given(st.binary(min_size=1, max_size=20))
def test_prefix_end_bounds_every_key_with_the_prefix(prefix: bytes) -> None:
    if prefix.strip(b"\xff") == b"":
        return
    end = prefix_end(prefix)
    assert prefix < end and prefix + b"\xff" * 8 < end
    assert not end.startswith(prefix)


def test_cursors_round_trip_and_are_checked_against_what_is_listed() -> None:
    key = event_key("app_1", 1_795_000_000_000, "evt_1")
    cursor = cursor_of(key)
    assert "=" not in cursor and key_of_cursor(cursor, events_prefix("app_1")) == key
    for bad in ("not base64!", cursor_of(event_key("app_2", 0, "evt_1")),
                cursor_of(events_prefix("app_1")), "", "\u00b2"):
        with pytest.raises(BadKey, match="not a cursor this API gave"):
            key_of_cursor(bad, events_prefix("app_1"))


@given(st.text(min_size=1, max_size=30).filter(encodable), st.integers(1, 64))
def test_the_owner_of_an_app_is_the_partition_kafka_puts_it_in(app_id: str, n: int) -> None:
    partitions = list(range(n))
    assert partition_of(app_id, n) == DefaultPartitioner()(app_id.encode(), partitions,
                                                           partitions)
