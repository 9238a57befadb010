"""Filing `eventlog.updates` records in one partition of the event log's table,
and expiring them. Pure: a function of the store, the record and the time.

- `Routed` makes the event's E, I and T keys (once: routing the same event
  again adds only webhooks it did not match before) and one D row, `pending`,
  per matched webhook.
- `Filed` (an attempt record) is filed only under a D row, i.e. a delivery
  the router (or ingest, for a test event) reported. The record's `app_id` is
  the deliverer's claim, not a fact: a record naming another app's event and
  webhook that the router never matched files nothing. One that comes before
  its event's `Routed` waits as an orphan (an hour at most) and is filed when
  it comes.
- Filing a record twice (re-read after a crash) writes the same keys and moves
  no counter: its identity is its `attempts` partition and offset.
- A delivery's status is that of its newest record: success → delivered;
  failure, gone, refused → retrying; dead → dead; dropped → dropped; a
  deferral → retrying once an attempt of its series failed, else pending. A
  record of a new series (a resend or a replay: another `origin`) starts over
  from pending. An older record (by time) than the one that set the status
  is filed but moves nothing.
- Every key that expires has a T key at its expiry time: an event and all it
  holds `retention` after it was filed, minute counters after an hour, hour
  counters after a week, orphans after an hour.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from schemas.attempts import Attempt
from schemas.eventlog import Filed, Routed, Update
from services.eventlog import keys, rows
from services.eventlog.store import Store

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
ORPHAN_MS = HOUR_MS
_STATUS_OF = {"success": "delivered", "failure": "retrying", "gone": "retrying",
              "refused": "retrying", "dead": "dead", "dropped": "dropped"}
_attempt_json = msgspec.json.Encoder().encode
_filed_json = msgspec.json.Encoder().encode
_filed = msgspec.json.Decoder(Filed).decode


def ms_of(moment: datetime) -> int:
    """Milliseconds since the epoch; a time without an offset is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


_LARGEST = (1 << 63) - 1


def _check_position(partition: int, offset: int) -> None:
    if not (0 <= partition <= _LARGEST and 0 <= offset <= _LARGEST):
        raise keys.BadKey("a partition or offset out of range")


def apply(store: Store, update: Update, *, now_ms: int, retention_ms: int) -> str:
    """File `update`; returns what happened (a metric label)."""
    if isinstance(update, Routed):
        return _routed(store, update, now_ms, retention_ms)
    return _filed_update(store, update, now_ms, retention_ms)


def _routed(store: Store, update: Routed, now_ms: int, retention_ms: int) -> str:
    app, event_id = update.app_id, update.event_id
    _check_position(update.partition, update.offset)
    id_key = keys.id_key(app, event_id)
    event_key = store.get(id_key)
    row = rows.event_row(store.get(event_key)) if event_key is not None and \
        store.get(event_key) is not None else None
    outcome = "repeated"
    if event_key is None or row is None:
        event_key = keys.event_key(app, ms_of(update.created_at), event_id)
        row = rows.EventRow(update.source, update.partition, update.offset, update.event_type,
                            update.created_at, now_ms)
        store.put(id_key, event_key)
        store.put(keys.time_key(now_ms + retention_ms, event_key), b"")
        outcome = "routed"
    for webhook_id in update.webhook_ids:
        delivery_key = keys.delivery_key(app, event_id, webhook_id)
        if store.get(delivery_key) is None:
            store.put(delivery_key, rows.encode(rows.DeliveryRow()))
            row.pending += 1
    store.put(event_key, rows.encode(row))
    for orphan_key, value in list(store.scan(keys.orphans_prefix(app, event_id))):
        store.delete(orphan_key)
        _filed_update(store, _filed(value[1:]), now_ms, retention_ms,
                      counted=value[:1] == _COUNTED)
    return outcome


_COUNTED = b"C"   # an orphan whose attempt is in its webhook's counters already
_UNCOUNTED = b"N"


def _filed_update(store: Store, update: Filed, now_ms: int, retention_ms: int, *,
                  counted: bool = False) -> str:
    attempt = update.attempt
    app, event_id, webhook_id = attempt.app_id, attempt.event_id, attempt.webhook_id
    if not app:
        return "no_app"  # written before attempts carried their app
    _check_position(update.partition, update.offset)
    delivery_key = keys.delivery_key(app, event_id, webhook_id)
    delivery_raw = store.get(delivery_key)
    if delivery_raw is None:
        orphan = keys.orphan_key(app, event_id, webhook_id, update.partition, update.offset)
        if store.get(orphan) is not None:
            return "orphaned"
        # A delivery the log no longer holds (a dead letter replayed after its
        # event's retention) of a webhook this app's deliveries have used: its
        # webhook's counters count it. An unknown webhook's are not made.
        counted = store.get(keys.webhook_key(app, webhook_id)) is not None and \
            store.get(keys.id_key(app, event_id)) is None
        if counted:
            _count(store, attempt, ms_of(attempt.at), now_ms, retention_ms)
        store.put(orphan, (_COUNTED if counted else _UNCOUNTED) + _filed_json(update))
        store.put(keys.time_key(now_ms + ORPHAN_MS, orphan), b"")
        return "orphaned"
    at_ms = ms_of(attempt.at)
    row_key = keys.attempt_row_key(app, event_id, webhook_id, at_ms, update.partition,
                                   update.offset)
    if store.get(row_key) is not None:
        return "duplicate"
    history_key = keys.history_key(app, webhook_id, at_ms, update.partition, update.offset)
    store.put(history_key, _attempt_json(attempt))
    store.put(row_key, history_key)
    _move(store, delivery_key, rows.delivery_row(delivery_raw), attempt, at_ms, now_ms,
          retention_ms)
    if not counted:
        _count(store, attempt, at_ms, now_ms, retention_ms)
    return "filed"


def _move(store: Store, delivery_key: bytes, delivery: rows.DeliveryRow, attempt: Attempt,
          at_ms: int, now_ms: int, retention_ms: int) -> None:
    """The delivery's new status, and its event's counts, failed index and its
    webhook's dead letters with it."""
    new_series = attempt.origin != delivery.origin
    if not new_series and at_ms < delivery.last_ms:
        return  # older than what set the status
    tried = False if new_series else delivery.tried
    if attempt.result == "deferred":
        status = "retrying" if tried else "pending"
    else:
        status = _STATUS_OF.get(attempt.result, delivery.status)
    tried = tried or attempt.result in ("failure", "gone", "refused", "success")
    before = delivery.status
    store.put(delivery_key, rows.encode(rows.DeliveryRow(status, at_ms, attempt.origin, tried)))
    if status == before:
        return
    app, event_id = attempt.app_id, attempt.event_id
    event_key = store.get(keys.id_key(app, event_id))
    raw = store.get(event_key) if event_key is not None else None
    if event_key is not None and raw is not None:
        row = rows.event_row(raw)
        was_failed = row.failed
        row.add(before, -1)
        row.add(status, 1)
        store.put(event_key, rows.encode(row))
        if row.failed != was_failed:
            _, created_ms, _ = keys.split_event_key(event_key)
            failed_key = keys.failed_key(app, created_ms, event_id)
            if row.failed:
                store.put(failed_key, b"")
            else:
                store.delete(failed_key)
    if "dead" in (before, status):
        change = 1 if status == "dead" else -1
        _update_webhook(store, app, attempt.webhook_id, now_ms, retention_ms,
                        lambda w: setattr(w, "dead_letters", max(0, w.dead_letters + change)))


def _count(store: Store, attempt: Attempt, at_ms: int, now_ms: int, retention_ms: int) -> None:
    """The webhook's last results, streak, breaker and counters."""
    app, webhook_id, result = attempt.app_id, attempt.webhook_id, attempt.result
    if result == "deferred":
        if attempt.error and attempt.error.startswith("circuit open") and attempt.retry_at:
            until = ms_of(attempt.retry_at)
            _update_webhook(store, app, webhook_id, now_ms, retention_ms,
                            lambda w: setattr(w, "breaker_until_ms", until))
        return
    if result not in ("success", "failure", "gone", "refused", "dead"):
        return
    if result == "success":
        def ok(w: rows.WebhookRow) -> None:
            if w.last_success_ms is None or at_ms >= w.last_success_ms:
                w.last_success_ms = at_ms
                # Records come out of time order (retry tiers are read by any
                # deliverer): an older success ends no later streak.
                if w.last_failure_ms is None or at_ms >= w.last_failure_ms:
                    w.streak = 0
                    w.breaker_until_ms = None
        _update_webhook(store, app, webhook_id, now_ms, retention_ms, ok)
    elif result != "dead":
        def failed(w: rows.WebhookRow) -> None:
            if w.last_failure_ms is None or at_ms >= w.last_failure_ms:
                w.last_failure_ms = at_ms
                w.last_failure = attempt.error
            if w.last_success_ms is None or at_ms > w.last_success_ms:
                w.streak += 1
        _update_webhook(store, app, webhook_id, now_ms, retention_ms, failed)
    for key, expires in (
        (keys.minute_key(app, webhook_id, at_ms // MINUTE_MS),
         (at_ms // MINUTE_MS + 1) * MINUTE_MS + HOUR_MS),
        (keys.hour_key(app, webhook_id, at_ms // HOUR_MS),
         (at_ms // HOUR_MS + 1) * HOUR_MS + WEEK_MS),
    ):
        raw = store.get(key)
        if raw is None:
            counters = rows.Bucket()
            store.put(keys.time_key(expires, key), b"")
        else:
            counters = rows.bucket(raw)
        if result == "success":
            counters.delivered += 1
        elif result == "dead":
            counters.dead += 1
        else:
            counters.failed += 1
        if result != "dead" and attempt.status_code is not None:
            counters.latency[latency_bucket(attempt.latency_ms)] += 1
        store.put(key, rows.encode(counters))


def _update_webhook(store: Store, app: str, webhook_id: str, now_ms: int, retention_ms: int,
                    change) -> None:  # type: ignore[no-untyped-def]
    """Change a webhook's W row. A new row gets a T key at half the retention:
    the sweep then writes the row again (so that its changelog record never
    ages out while the row is in use) or, once it has not changed for the
    retention, deletes it."""
    key = keys.webhook_key(app, webhook_id)
    raw = store.get(key)
    if raw is None:
        webhook = rows.WebhookRow()
        store.put(keys.time_key(now_ms + retention_ms // 2, key), b"")
    else:
        webhook = rows.webhook_row(raw)
    change(webhook)
    webhook.touched_ms = max(webhook.touched_ms, now_ms)
    store.put(key, rows.encode(webhook))


def latency_bucket(latency_ms: float) -> int:
    for i, bound in enumerate(rows.LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return i
    return len(rows.LATENCY_BOUNDS_MS)


def sweep(store: Store, *, now_ms: int, retention_ms: int, budget: int = 10_000) -> int:
    """Delete what expired by `now_ms`, at most `budget` T keys' worth (a sweep
    is a bounded step: call again until it returns less); returns how many
    keys were deleted."""
    due = []
    for time_key, _ in store.scan(keys.TIME_PREFIX):
        if keys.time_of_time_key(time_key) > now_ms or len(due) == budget:
            break
        due.append(time_key)
    deleted = 0
    for time_key in due:
        target = keys.key_of_time_key(time_key)
        if target[:1] == b"E":
            deleted += _delete_event(store, target, now_ms, retention_ms)
        elif target[:1] == b"W":
            deleted += _renew_or_delete_webhook(store, target, now_ms, retention_ms)
        elif store.get(target) is not None:
            store.delete(target)
            deleted += 1
        store.delete(time_key)
        deleted += 1
    return deleted


def _renew_or_delete_webhook(store: Store, key: bytes, now_ms: int, retention_ms: int) -> int:
    raw = store.get(key)
    if raw is None:
        return 0
    webhook = rows.webhook_row(raw)
    if webhook.touched_ms + retention_ms <= now_ms:
        store.delete(key)
        return 1
    store.put(key, raw)  # renews its changelog record
    store.put(keys.time_key(now_ms + retention_ms // 2, key), b"")
    return 0


def _delete_event(store: Store, event_key: bytes, now_ms: int, retention_ms: int) -> int:
    try:
        app, created_ms, event_id = keys.split_event_key(event_key)
    except keys.BadKey:
        return 0
    prefix = keys.deliveries_prefix(app, event_id)
    for delivery_key, value in list(store.scan(prefix)):
        if rows.delivery_row(value).status == "dead":  # no longer waiting: forgotten
            webhook_id, _ = keys._read_part(delivery_key, len(prefix))
            _update_webhook(store, app, webhook_id, now_ms, retention_ms,
                            lambda w: setattr(w, "dead_letters", max(0, w.dead_letters - 1)))
    doomed = [event_key, keys.id_key(app, event_id), keys.failed_key(app, created_ms, event_id)]
    prefix = keys.event_attempts_prefix(app, event_id)
    for row_key, history_key in store.scan(prefix):
        doomed += [row_key, history_key]
    doomed += [k for k, _ in store.scan(keys.deliveries_prefix(app, event_id))]
    doomed += [k for k, _ in store.scan(keys.orphans_prefix(app, event_id))]
    deleted = 0
    for key in doomed:
        if store.get(key) is not None:
            store.delete(key)
            deleted += 1
    return deleted
