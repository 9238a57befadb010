"""The event log's filing, expiry and queries on the pure store (fold.py,
queries.py): an event's story, statuses by table, idempotence, trust, paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.attempts import Attempt
from schemas.eventlog import Filed, Routed
from services.eventlog import fold, keys, queries
from services.eventlog.store import MemoryStore

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = fold.ms_of(T0)
DAY = 86_400_000


def routed(event="evt_1", app="app_1", webhooks=("wh_1",), at=T0, type_="message.received"):
    return Routed(app_id=app, event_id=event, event_type=type_, created_at=at,
                  source="events", partition=0, offset=7, webhook_ids=list(webhooks))


class Src:
    offset = 0


def filed(result, *, event="evt_1", app="app_1", webhook="wh_1", at=T0, attempt=1, origin="",
          error=None, code=None, latency=0.0, offset=None, retry_at=None):
    if offset is None:
        Src.offset += 1
        offset = Src.offset
    return Filed(attempt=Attempt(
        webhook_id=webhook, event_id=event, event_type="message.received", attempt=attempt,
        at=at, result=result, app_id=app, error=error, status_code=code, latency_ms=latency,
        origin=origin, retry_at=retry_at), partition=1, offset=offset)


def apply(store, *updates, now=NOW):
    return [fold.apply(store, u, now_ms=now, retention_ms=7 * DAY) for u in updates]


def status(store, event="evt_1", webhook="wh_1", app="app_1"):
    found = queries.event(store, app, event)
    return {d.webhook_id: d.status for d in found.deliveries}[webhook]


def counts(store, app="app_1"):
    [summary] = queries.list_events(store, app, queries.EventFilter(), limit=10,
                                    cursor=None).events
    return summary.deliveries


@pytest.mark.parametrize("results, expected", [
    ([], "pending"),
    (["deferred"], "pending"),
    (["failure"], "retrying"),
    (["failure", "deferred"], "retrying"),
    (["failure", "success"], "delivered"),
    (["failure", "dead"], "dead"),
    (["gone", "dead"], "dead"),
    (["refused", "dead"], "dead"),
    (["dead"], "dead"),
    (["dropped"], "dropped"),
    (["success"], "delivered"),
])
def test_a_delivery_takes_the_status_of_its_newest_record(results, expected):
    store = MemoryStore()
    apply(store, routed())
    apply(store, *[filed(r, at=T0 + timedelta(seconds=i)) for i, r in enumerate(results)])
    assert status(store) == expected
    assert getattr(counts(store), expected) == 1
    c = counts(store)
    assert sum(getattr(c, f) for f in c.__struct_fields__) == 1


def test_an_events_full_story_matched_retried_dead_replayed_resent():
    store = MemoryStore()
    t = iter(T0 + timedelta(seconds=i) for i in range(100))
    apply(store, routed(webhooks=("wh_1", "wh_2")))
    apply(store, filed("success", webhook="wh_2", at=next(t), code=200, latency=12))
    apply(store, filed("failure", at=next(t), code=500, error="HTTP 500", latency=30))
    apply(store, filed("failure", at=next(t), attempt=2, code=500, error="HTTP 500"))
    apply(store, filed("dead", at=next(t), attempt=2, error="HTTP 500"))
    assert status(store) == "dead"
    page = queries.list_events(store, "app_1", queries.EventFilter(status="failed"), limit=10,
                               cursor=None)
    assert [e.id for e in page.events] == ["evt_1"]
    assert queries.stats(store, "app_1", "wh_1", now_ms=NOW + 60_000).dead_letters == 1
    apply(store, filed("success", at=next(t), origin="replay:job_1", code=200))
    assert status(store) == "delivered"
    assert queries.list_events(store, "app_1", queries.EventFilter(status="failed"), limit=10,
                               cursor=None).events == []
    assert queries.stats(store, "app_1", "wh_1", now_ms=NOW + 60_000).dead_letters == 0
    apply(store, filed("failure", at=next(t), origin="resend:rs_1", code=502, error="HTTP 502"))
    assert status(store) == "retrying"
    found = queries.event(store, "app_1", "evt_1")
    [one] = [d for d in found.deliveries if d.webhook_id == "wh_1"]
    assert [(a.result, a.origin) for a in one.attempts] == [
        ("failure", ""), ("failure", ""), ("dead", ""), ("success", "replay:job_1"),
        ("failure", "resend:rs_1")]
    assert counts(store).delivered == 1 and counts(store).retrying == 1
    stats = queries.stats(store, "app_1", "wh_1", now_ms=NOW + 60_000)
    assert (stats.hour.delivered, stats.hour.failed, stats.hour.dead) == (1, 3, 1)
    assert stats.failure_streak == 1 and stats.last_failure == "HTTP 502"
    assert stats.latency.p50_ms is not None


def test_filing_the_same_record_twice_changes_nothing():
    store = MemoryStore()
    apply(store, routed())
    record = filed("failure", code=500)
    apply(store, record)
    before = store.items()
    assert apply(store, record) == ["duplicate"]
    assert store.items() == before


def test_an_attempt_of_a_delivery_the_router_never_matched_files_nothing_visible():
    store = MemoryStore()
    apply(store, routed(app="victim", webhooks=("wh_v",)))
    # Another app's claim on the victim's event, and a claim on an unmatched webhook.
    assert apply(store, filed("success", app="victim", webhook="wh_other")) == ["orphaned"]
    assert status(store, app="victim", webhook="wh_v") == "pending"
    assert [d.webhook_id for d in queries.event(store, "victim", "evt_1").deliveries] == ["wh_v"]
    # Orphans expire after an hour.
    fold.sweep(store, now_ms=NOW + fold.ORPHAN_MS + 1, retention_ms=7 * DAY)
    assert not list(store.scan(b"O"))


def test_an_attempt_before_its_routed_record_is_adopted():
    store = MemoryStore()
    assert apply(store, filed("success", code=200)) == ["orphaned"]
    apply(store, routed())
    assert status(store) == "delivered"
    assert not list(store.scan(b"O"))


def test_an_older_record_files_but_does_not_move_the_status():
    store = MemoryStore()
    apply(store, routed())
    apply(store, filed("success", at=T0 + timedelta(seconds=5)))
    apply(store, filed("failure", at=T0 + timedelta(seconds=1)))
    assert status(store) == "delivered"
    assert len(queries.event(store, "app_1", "evt_1").deliveries[0].attempts) == 2


def test_routing_again_adds_only_new_webhooks():
    store = MemoryStore()
    apply(store, routed(webhooks=("wh_1",)))
    apply(store, filed("success"))
    assert apply(store, routed(webhooks=("wh_1", "wh_2"))) == ["repeated"]
    c = counts(store)
    assert (c.delivered, c.pending) == (1, 1)


def test_events_page_newest_first_with_cursor_and_time_window():
    store = MemoryStore()
    for i in range(25):
        apply(store, routed(event=f"evt_{i:02}", at=T0 + timedelta(minutes=i), webhooks=()))
    apply(store, routed(event="other", app="app_2", webhooks=()))
    seen, cursor = [], None
    while True:
        page = queries.list_events(store, "app_1", queries.EventFilter(), limit=10,
                                   cursor=cursor)
        seen += [e.id for e in page.events]
        cursor = page.next
        if cursor is None:
            break
    assert seen == [f"evt_{i:02}" for i in reversed(range(25))]
    window = queries.EventFilter(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=9))
    page = queries.list_events(store, "app_1", window, limit=100, cursor=None)
    assert [e.id for e in page.events] == [f"evt_{i:02}" for i in (9, 8, 7, 6, 5)]
    with pytest.raises(keys.BadKey):
        queries.list_events(store, "app_2", queries.EventFilter(), limit=1, cursor=cursor or
                            keys.cursor_of(keys.event_key("app_1", NOW, "evt_00")))


def test_a_sparse_filter_reads_a_bounded_number_of_keys_per_page():
    store = MemoryStore()
    for i in range(50):
        apply(store, routed(event=f"evt_{i:02}", at=T0 + timedelta(seconds=i), webhooks=(),
                            type_="message.sent" if i == 0 else "message.received"))
    flt = queries.EventFilter(type="message.sent")
    page = queries.list_events(store, "app_1", flt, limit=10, cursor=None, scan_budget=20)
    assert page.events == [] and page.next is not None
    pages = 1
    while page.next:
        page = queries.list_events(store, "app_1", flt, limit=10, cursor=page.next,
                                   scan_budget=20)
        pages += 1
    assert [e.id for e in page.events] == ["evt_00"] and pages == 3


def test_retention_deletes_an_event_and_everything_it_holds():
    store = MemoryStore()
    apply(store, routed(webhooks=("wh_1",)))
    apply(store, filed("failure", code=500), filed("dead"))
    apply(store, routed(event="evt_2", webhooks=()), now=NOW + DAY)
    fold.sweep(store, now_ms=NOW + 7 * DAY + 1, retention_ms=7 * DAY)
    assert queries.event(store, "app_1", "evt_1") is None
    assert queries.event(store, "app_1", "evt_2") is not None
    left = {k[:1] for k, _ in store.items()}
    assert not left & {b"A", b"H", b"D", b"F", b"O"}
    fold.sweep(store, now_ms=NOW + 8 * DAY + 2 * fold.WEEK_MS, retention_ms=7 * DAY)
    assert {k[:1] for k, _ in store.items()} <= {b"W"}


def test_attempts_page_newest_first():
    store = MemoryStore()
    apply(store, routed())
    for i in range(7):
        apply(store, filed("failure", at=T0 + timedelta(seconds=i), attempt=i + 1))
    first = queries.attempts_page(store, "app_1", "wh_1", limit=5, cursor=None)
    assert [a.attempt for a in first.attempts] == [7, 6, 5, 4, 3]
    rest = queries.attempts_page(store, "app_1", "wh_1", limit=5, cursor=first.next_cursor)
    assert [a.attempt for a in rest.attempts] == [2, 1] and rest.next_cursor is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["success", "failure", "deferred", "dead", "dropped",
                                            "gone"]),
                          st.integers(0, 50), st.sampled_from(["", "replay:j", "resend:r"])),
                max_size=15))
def test_counts_always_match_the_deliveries(records):
    store = MemoryStore()
    apply(store, routed(webhooks=("wh_1", "wh_2")))
    for result, second, origin in records:
        apply(store, filed(result, at=T0 + timedelta(seconds=second), origin=origin,
                           webhook="wh_1" if second % 2 else "wh_2"))
    found = queries.event(store, "app_1", "evt_1")
    c = counts(store)
    for name in ("pending", "delivered", "retrying", "dead", "dropped"):
        assert getattr(c, name) == sum(d.status == name for d in found.deliveries)
    failed = queries.list_events(store, "app_1", queries.EventFilter(status="failed"),
                                 limit=5, cursor=None).events
    assert bool(failed) == (c.retrying + c.dead > 0)
    dead = sum(d.status == "dead" for d in found.deliveries)
    assert sum(queries.stats(store, "app_1", w, now_ms=NOW).dead_letters
               for w in ("wh_1", "wh_2")) == dead
