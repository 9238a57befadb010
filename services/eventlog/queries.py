"""Answers of the event log's read routes from one partition's store. Pure.

Lists are scans from a seek key. A filter that the key order does not serve
(`type`, and every `status` but `failed`, which has its own index) is applied to
at most `scan_budget` keys per page: a page may then hold fewer than `limit`
events and still have a `next` cursor, so a sparse filter never makes one
request read a whole partition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from schemas.api import AttemptsPage
from schemas.attempts import Attempt
from schemas.eventlog_api import (
    Breaker,
    EventPage,
    EventSummary,
    Latency,
    WebhookDelivery,
    WebhookStats,
    Window,
)
from services.eventlog import keys, rows
from services.eventlog.fold import HOUR_MS, MINUTE_MS, ms_of
from services.eventlog.store import Store

_attempt = msgspec.json.Decoder(Attempt).decode


@dataclass(frozen=True, slots=True)
class EventFilter:
    type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_events(store: Store, app_id: str, flt: EventFilter, *, limit: int,
                cursor: str | None, scan_budget: int = 5000) -> EventPage:
    """Newest first. Raises keys.BadKey for a cursor this list did not give."""
    failed_only = flt.status == "failed"
    prefix = keys.failed_prefix(app_id) if failed_only else keys.events_prefix(app_id)
    start = prefix
    if flt.until is not None:
        start = prefix + keys.inverted(_clamped_ms(flt.until))
    after = None
    if cursor is not None:
        after = keys.key_of_cursor(cursor, prefix)
        start = max(start, after)
    since_ms = _clamped_ms(flt.since) if flt.since is not None else None
    found: list[EventSummary] = []
    examined = 0
    last: bytes | None = None
    for key, value in store.scan(prefix, start):
        if key == after:
            continue
        event_key = keys.event_key_of_failed(key) if failed_only else key
        app, created_ms, event_id = keys.split_event_key(event_key)
        if since_ms is not None and created_ms < since_ms:
            return EventPage(events=found, next=None)
        if len(found) == limit or examined == scan_budget:
            return EventPage(events=found, next=keys.cursor_of(last) if last else None)
        examined += 1
        last = key
        raw = value if not failed_only else store.get(event_key)
        if raw is None:
            continue
        row = rows.event_row(raw)
        if flt.type is not None and row.type != flt.type:
            continue
        if flt.status is not None and not failed_only and getattr(row, flt.status) == 0:
            continue
        found.append(EventSummary(id=event_id, type=row.type, created_at=row.created_at,
                                  deliveries=row.counts()))
    return EventPage(events=found, next=None)


def _clamped_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return ms_of(moment)


@dataclass(frozen=True, slots=True)
class Found:
    row: rows.EventRow
    event_key: bytes
    deliveries: list[WebhookDelivery]


def event(store: Store, app_id: str, event_id: str) -> Found | None:
    event_key = store.get(keys.id_key(app_id, event_id))
    raw = store.get(event_key) if event_key is not None else None
    if event_key is None or raw is None:
        return None
    deliveries = []
    for delivery_key, value in store.scan(keys.deliveries_prefix(app_id, event_id)):
        webhook_id, _ = keys._read_part(delivery_key, len(keys.deliveries_prefix(app_id, event_id)))
        attempts = []
        for _, history_key in store.scan(keys.attempts_prefix(app_id, event_id, webhook_id)):
            record = store.get(history_key)
            if record is not None:
                attempts.append(_attempt(record))
        deliveries.append(WebhookDelivery(webhook_id=webhook_id,
                                          status=rows.delivery_row(value).status,  # type: ignore[arg-type]
                                          attempts=attempts))
    return Found(rows.event_row(raw), event_key, deliveries)


def attempts_page(store: Store, app_id: str, webhook_id: str, *, limit: int,
                  cursor: str | None) -> AttemptsPage:
    """A webhook's attempt records, newest first."""
    prefix = keys.history_prefix(app_id, webhook_id)
    after = keys.key_of_cursor(cursor, prefix) if cursor is not None else None
    found: list[Attempt] = []
    last = None
    for key, value in store.scan(prefix, after):
        if key == after:
            continue
        if len(found) == limit:
            return AttemptsPage(attempts=found, next_cursor=keys.cursor_of(last))
        found.append(_attempt(value))
        last = key
    return AttemptsPage(attempts=found)


def stats(store: Store, app_id: str, webhook_id: str, *, now_ms: int) -> WebhookStats:
    minute_now = now_ms // MINUTE_MS
    hour_now = now_ms // HOUR_MS
    hour = _window(store, keys.minute_key(app_id, webhook_id, minute_now - 59),
                   keys.minute_key(app_id, webhook_id, minute_now))
    day_buckets = _buckets(store, keys.hour_key(app_id, webhook_id, hour_now - 23),
                           keys.hour_key(app_id, webhook_id, hour_now))
    week = _window(store, keys.hour_key(app_id, webhook_id, hour_now - 167),
                   keys.hour_key(app_id, webhook_id, hour_now))
    raw = store.get(keys.webhook_key(app_id, webhook_id))
    w = rows.webhook_row(raw) if raw is not None else rows.WebhookRow()
    breaker = Breaker()
    if w.breaker_until_ms is not None and w.breaker_until_ms > now_ms:
        breaker = Breaker(state="open", until=_time(w.breaker_until_ms))
    return WebhookStats(
        webhook_id=webhook_id, hour=hour, day=_sum(day_buckets), week=week,
        latency=_latency(day_buckets),
        last_success_at=_time(w.last_success_ms), last_failure_at=_time(w.last_failure_ms),
        last_failure=w.last_failure, failure_streak=w.streak, dead_letters=w.dead_letters,
        breaker=breaker)


def _buckets(store: Store, first: bytes, last: bytes) -> list[rows.Bucket]:
    prefix = first[:-8]
    out = []
    for key, value in store.scan(prefix, first):
        if key > last:
            break
        out.append(rows.bucket(value))
    return out


def _window(store: Store, first: bytes, last: bytes) -> Window:
    return _sum(_buckets(store, first, last))


def _sum(buckets: list[rows.Bucket]) -> Window:
    delivered = sum(b.delivered for b in buckets)
    failed = sum(b.failed for b in buckets)
    dead = sum(b.dead for b in buckets)
    tried = delivered + failed
    return Window(delivered=delivered, failed=failed, dead=dead,
                  success_rate=round(delivered / tried, 4) if tried else None)


def _latency(buckets: list[rows.Bucket]) -> Latency:
    """Percentiles from the histogram: each the upper bound of its bucket (the
    last bucket, above every bound, reports the last bound)."""
    total = [0] * (len(rows.LATENCY_BOUNDS_MS) + 1)
    for b in buckets:
        for i, n in enumerate(b.latency[:len(total)]):
            total[i] += n
    count = sum(total)
    if count == 0:
        return Latency()

    def percentile(q: float) -> float:
        rank = q * count
        seen = 0
        for i, n in enumerate(total):
            seen += n
            if seen >= rank:
                return float(rows.LATENCY_BOUNDS_MS[min(i, len(rows.LATENCY_BOUNDS_MS) - 1)])
        return float(rows.LATENCY_BOUNDS_MS[-1])

    return Latency(p50_ms=percentile(0.5), p95_ms=percentile(0.95))


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
