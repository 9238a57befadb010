"""Attacks on the event log (issue 11) that need no broker: its HTTP routes on a
stand-in service (the real handlers, a MemoryStore partition), its filing of
hostile `eventlog.updates` records, its changelog after a failed write, its
counters after expiry, and its replay jobs' bookkeeping.

Each test fails while the bug it names is there."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import msgspec
import pytest
import rocksdict
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaError
from faust.types import TP

from schemas.attempts import Attempt
from schemas.eventlog import Filed, Routed, update_encoder
from services.common.config import KafkaSettings
from services.common.topics import Topics
from services.eventlog import app as eventlog_app
from services.eventlog import fold, keys, queries, replay
from services.eventlog.settings import Settings
from services.eventlog.store import MemoryStore, Overlay
from services.eventlog.table import PartitionStore
from tests.conftest import auth

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = fold.ms_of(T0)
DAY = 86_400_000
APP = "app_1"
PARTITIONS = 1


def routed(event="evt_1", app=APP, webhooks=("wh_1",), at=T0) -> Routed:
    return Routed(app_id=app, event_id=event, event_type="message.received", created_at=at,
                  source="events", partition=0, offset=7, webhook_ids=list(webhooks))


def filed(result, *, offset, event="evt_1", app=APP, webhook="wh_1", at=T0, origin="",
          code=None, error=None) -> Filed:
    return Filed(attempt=Attempt(
        webhook_id=webhook, event_id=event, event_type="message.received", attempt=1, at=at,
        result=result, app_id=app, origin=origin, status_code=code, error=error,
        latency_ms=12.0), partition=0, offset=offset)


# -- a stand-in of the service around the real HTTP handlers -----------------------

class _Metrics:
    def __init__(self) -> None:
        self.request_duration = SimpleNamespace(
            labels=lambda *a: SimpleNamespace(observe=lambda *_: None))


class FakeService:
    """What the handlers use of EventLog: settings, a partition store, metrics."""

    def __init__(self, store: MemoryStore) -> None:
        self.settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t."),
                                 jwt_secret="test-secret-of-at-least-32-bytes-long")
        self.store = store
        self.metrics = _Metrics()
        self.jobs: dict = {}
        self._replay_requests: set = set()
        self.producer = None

    def store_for(self, app_id: str) -> MemoryStore:
        return self.store


async def _client(service: object) -> TestClient:
    client = TestClient(TestServer(eventlog_app.create_http_app(service)))  # type: ignore[arg-type]
    await client.start_server()
    return client


def _many_attempts(n: int) -> MemoryStore:
    store = MemoryStore()
    fold.apply(store, routed(), now_ms=NOW, retention_ms=7 * DAY)
    for i in range(n):
        fold.apply(store, filed("failure", offset=i + 1, at=T0 + timedelta(seconds=i)),
                   now_ms=NOW, retention_ms=7 * DAY)
    return store


async def test_a_limit_with_leading_zeros_cannot_pass_the_maximum_page() -> None:
    """`limit=000001111` passes the check of its first 6 characters (1) and is
    then used whole (1111): a page of every attempt the webhook has, built in
    one synchronous scan on the event loop. Ingest relays the query as it is."""
    client = await _client(FakeService(_many_attempts(300)))
    try:
        response = await client.get(f"/v1/apps/{APP}/webhooks/wh_1/attempts?limit=000001111",
                                    headers=auth(APP))
        body = await response.json()
        assert response.status == 400 or len(body["attempts"]) <= eventlog_app.MAX_ATTEMPTS_PAGE, (
            response.status, len(body.get("attempts", [])))
        response = await client.get(f"/v1/apps/{APP}/events?limit=000001999",
                                    headers=auth(APP))
        assert response.status == 400, response.status
    finally:
        await client.close()


async def test_a_limit_of_thousands_of_digits_is_a_400_not_a_500() -> None:
    """int() refuses over 4,300 digits (ValueError): `_limit` lets it through."""
    client = await _client(FakeService(MemoryStore()))
    try:
        limit = "000001" + "9" * 4400
        for path in (f"/v1/apps/{APP}/events?limit={limit}",
                     f"/v1/apps/{APP}/webhooks/wh_1/attempts?limit={limit}"):
            response = await client.get(path, headers=auth(APP))
            assert response.status == 400, (path[:60], response.status, await response.text())
    finally:
        await client.close()


async def test_since_without_an_offset_and_until_with_one_is_a_400_not_a_500() -> None:
    """RFC 3339 without an offset decodes naive; comparing it with an aware one
    raises TypeError: a 500 for a client's bad (or merely mixed) input."""
    client = await _client(FakeService(MemoryStore()))
    try:
        response = await client.get(
            f"/v1/apps/{APP}/events?since=2026-11-22T12:00:00&until=2026-11-23T12:00:00Z",
            headers=auth(APP))
        assert response.status in (200, 400), (response.status, await response.text())
    finally:
        await client.close()


async def test_a_replay_since_without_an_offset_and_until_with_one_is_a_400_not_a_500() -> None:
    """The same comparison in start_replay (ReplayRequest's since > until)."""
    client = await _client(FakeService(MemoryStore()))
    try:
        response = await client.post(
            f"/v1/apps/{APP}/webhooks/wh_1/replay", headers=auth(APP),
            json={"since": "2026-11-22T12:00:00", "until": "2026-11-23T12:00:00Z"})
        # (The stand-in has no Kafka: anything but the TypeError's 500 is the point.)
        assert response.status != 500 or "internal error" not in await response.text(), (
            response.status, await response.text())
    finally:
        await client.close()


# -- hostile eventlog.updates records --------------------------------------------

def _message(value: bytes, app: str = APP) -> SimpleNamespace:
    return SimpleNamespace(value=value, topic="eventlog.updates",
                           partition=keys.partition_of(app, PARTITIONS), offset=1)


def _file_one(store: MemoryStore, value: bytes) -> str:
    """The file agent's filing of one record (EventLog._file_one): anything it
    raises makes the agent exit the process before the commit, and the record
    is read again after every restart."""
    service = SimpleNamespace(partitions=PARTITIONS,
                              settings=SimpleNamespace(retention=7 * 86400.0))
    return eventlog_app.EventLog._file_one(service, store, _message(value))  # type: ignore[arg-type]


def test_a_routed_record_dated_year_1_without_offset_is_skipped_not_a_crash_loop() -> None:
    """msgspec decodes '0001-01-01T00:00:00' naive; fold.ms_of calls .timestamp(),
    which raises ValueError('year 0 is out of range') for it: not a BadKey, so
    the file agent exits; restarted, it reads the same record and exits again."""
    value = msgspec.json.encode({
        "type": "routed", "app_id": APP, "event_id": "evt_poison",
        "event_type": "message.received", "created_at": "0001-01-01T00:00:00",
        "source": "events", "partition": 0, "offset": 1, "webhook_ids": ["wh_1"]})
    _file_one(MemoryStore(), value)  # raises ValueError now


def test_an_attempt_dated_year_1_without_offset_is_skipped_not_a_crash_loop() -> None:
    """The same through `attempts` (the rekey agent forwards it as it is): an
    attempt of a delivery the log knows, at a naive year-1 time."""
    store = MemoryStore()
    fold.apply(store, routed(), now_ms=NOW, retention_ms=7 * DAY)
    value = msgspec.json.encode({
        "type": "filed", "partition": 0, "offset": 5, "attempt": {
            "webhook_id": "wh_1", "event_id": "evt_1", "event_type": "message.received",
            "attempt": 1, "at": "0001-01-01T00:00:00", "result": "failure", "app_id": APP}})
    _file_one(store, value)  # raises ValueError now


def test_a_routed_record_with_an_offset_past_2_64_is_skipped_not_a_crash_loop() -> None:
    """msgspec decodes any JSON integer into an int field; the E row's msgpack
    encoding refuses one past 2**64 - 1 (OverflowError), after the I, T and D
    keys were written: not a BadKey, so the file agent exits, for ever."""
    value = msgspec.json.encode({
        "type": "routed", "app_id": APP, "event_id": "evt_poison",
        "event_type": "message.received", "created_at": "2026-11-23T12:00:00Z",
        "source": "events", "partition": 0, "offset": 1 << 64, "webhook_ids": ["wh_1"]})
    _file_one(MemoryStore(), value)  # raises OverflowError now


def test_a_record_skipped_as_a_bad_key_leaves_no_half_filed_event() -> None:
    """A Routed record whose second webhook id cannot be a key (empty, or over
    65,535 bytes) is 'skipped' after its I, T and first D keys were written (and
    sent to the changelog), and before its E row: the event's I key then points
    at nothing, and when the event is routed again its first delivery is not
    counted (its D row exists), so its counts disagree with its D rows."""
    store = MemoryStore()
    bad = update_encoder.encode(routed(webhooks=("wh_1", "")))
    assert _file_one(store, bad) == "skipped"
    assert store.items() == [], [k for k, _ in store.items()]


def test_a_skipped_record_then_the_good_one_counts_every_delivery() -> None:
    store = MemoryStore()
    _file_one(store, update_encoder.encode(routed(webhooks=("wh_1", ""))))
    _file_one(store, update_encoder.encode(routed(webhooks=("wh_1", "wh_2"))))
    [summary] = queries.list_events(store, APP, queries.EventFilter(), limit=10,
                                    cursor=None).events
    found = queries.event(store, APP, "evt_1")
    assert found is not None
    assert summary.deliveries.pending == len(found.deliveries) == 2, (
        summary.deliveries, [d.webhook_id for d in found.deliveries])


# -- the changelog after a write that was not acknowledged ----------------------

class _Changelog:
    """Faust's table as PartitionStore uses it (the partition's RocksDB), and
    the changelog sender (acknowledged, or failing while `failing`)."""

    def __init__(self, db: rocksdict.Rdict) -> None:
        self.data = SimpleNamespace(_dbs={0: db}, _db_for_partition=lambda p: db)
        self.records: list[tuple[bytes, bytes | None]] = []
        self.failing = False

    async def send(self, partition, key, value):  # type: ignore[no-untyped-def]
        future = asyncio.get_running_loop().create_future()
        if self.failing:
            future.set_exception(KafkaError("the changelog write failed"))
        else:
            self.records.append((key, value))
            future.set_result(None)
        return future


async def _file_batch(table: _Changelog, batch: list[bytes]) -> None:
    """What the file agent does with a batch: file each, then await the changelog."""
    store = PartitionStore(table, 0, open_it=True, send=table.send)
    staged = Overlay(store)
    for value in batch:
        _file_one(staged, value)  # type: ignore[arg-type]
    await store.commit(staged.writes)


async def test_a_batch_whose_changelog_write_failed_is_in_the_changelog_after_the_restart(
        tmp_path) -> None:
    """The file agent writes RocksDB first and the changelog after; a changelog
    write that fails (or a SIGKILL before it is sent) ends the process before
    the commit, and the batch is filed again after the restart on the same
    (warm) RocksDB. Filing is idempotent *against the local DB*: the Routed is
    'repeated' (no I, T or D writes), the attempt a 'duplicate' (no writes). The
    changelog, which standbys and the next owner are built from, never gets
    them: after a failover the event has no I key (detail 404), no T key (never
    expires), no delivery and no attempt."""
    options = rocksdict.Options(raw_mode=True)
    path = str(tmp_path / "partition-0")
    batch = [update_encoder.encode(routed()),
             update_encoder.encode(filed("failure", offset=1, code=500)),
             update_encoder.encode(filed("dead", offset=2))]

    db = rocksdict.Rdict(path, options=options)
    table = _Changelog(db)
    table.failing = True
    with pytest.raises(KafkaError):
        await _file_batch(table, batch)  # the agent exits here (os._exit)
    db.close()

    db = rocksdict.Rdict(path, options=options)  # the restart, same data dir
    try:
        table = _Changelog(db)
        await _file_batch(table, batch)
        local = {bytes(k): bytes(v) for k, v in db.items()}
    finally:
        db.close()
    recovered: dict[bytes, bytes] = {}
    for key, value in table.records:
        if value is None:
            recovered.pop(key, None)
        else:
            recovered[key] = value
    missing = sorted(k[:1] for k in set(local) - set(recovered))
    assert not missing, f"keys the changelog never got (by tag): {missing}"


# -- counters that drift ---------------------------------------------------------

def test_dead_letters_of_an_expired_event_go_away_once_replayed() -> None:
    """The sweep deletes an expired event's D rows but leaves the webhook's
    dead_letters as it was; a replay of that dead letter later files as an
    orphan (no D row) and moves nothing: the stats show a dead letter forever."""
    store = MemoryStore()
    fold.apply(store, routed(), now_ms=NOW, retention_ms=7 * DAY)
    fold.apply(store, filed("failure", offset=1, code=500), now_ms=NOW, retention_ms=7 * DAY)
    fold.apply(store, filed("dead", offset=2), now_ms=NOW, retention_ms=7 * DAY)
    assert queries.stats(store, APP, "wh_1", now_ms=NOW).dead_letters == 1
    later = NOW + 7 * DAY + 60_000
    while fold.sweep(store, now_ms=later, retention_ms=7 * DAY):
        pass
    assert queries.event(store, APP, "evt_1") is None
    at = datetime.fromtimestamp(later / 1000, UTC)
    fold.apply(store, filed("success", offset=3, at=at, origin="replay:rj_1", code=200),
               now_ms=later, retention_ms=7 * DAY)
    assert queries.stats(store, APP, "wh_1", now_ms=later).dead_letters == 0


def test_a_replayed_delivery_of_an_expired_event_counts_in_the_webhooks_stats() -> None:
    """Dead letters stay 30 days; events leave the log after its retention. A
    replay of an older dead letter succeeds, and its attempt record is filed
    as an orphan (no D row) and dropped an hour later: the webhook's stats
    never see the success (no delivered count, no last_success_at, the failure
    streak goes on), nor any failure of such a replay."""
    store = MemoryStore()
    fold.apply(store, routed(), now_ms=NOW, retention_ms=7 * DAY)
    fold.apply(store, filed("failure", offset=1, code=500), now_ms=NOW, retention_ms=7 * DAY)
    fold.apply(store, filed("dead", offset=2), now_ms=NOW, retention_ms=7 * DAY)
    later = NOW + 10 * DAY
    while fold.sweep(store, now_ms=later, retention_ms=7 * DAY):
        pass
    at = datetime.fromtimestamp(later / 1000, UTC)
    fold.apply(store, filed("success", offset=3, at=at, origin="replay:rj_1", code=200),
               now_ms=later, retention_ms=7 * DAY)
    stats = queries.stats(store, APP, "wh_1", now_ms=later)
    assert (stats.hour.delivered, stats.failure_streak) == (1, 0), stats
    assert stats.last_success_at == at, stats


async def test_the_envelope_cache_is_bounded_in_bytes_not_only_in_entries() -> None:
    """Envelopes keeps the raw records of the last 512 envelopes read, whatever
    their size: `events` takes records up to its max.message.bytes (1 MiB by
    default; producers may write it directly) and ingest events of 256 KiB.
    Reading the details of 512 large events pins 512 MiB in an instance whose
    pod is limited to 768 MiB (RocksDB's caches included)."""
    from services.eventlog import envelopes as envelopes_module
    from services.eventlog import rows

    reader = envelopes_module.Envelopes(
        KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t."), Topics("t."))
    big = "x" * (1 << 20)

    async def fetch(source: str, partition: int, offset: int) -> bytes:
        return msgspec.json.encode({"id": f"evt_{offset}", "type": "message.received",
                                    "app_id": APP, "data": {"big": big}})

    reader._fetch = fetch  # type: ignore[method-assign]
    for offset in range(600):
        row = rows.EventRow("events", 0, offset, "message.received", T0, NOW)
        await reader.envelope(APP, f"evt_{offset}", row)
    held = sum(len(v) for v in reader._cache.values())
    assert held < 100 << 20, f"the envelope cache holds {held >> 20} MiB"


def test_a_success_filed_after_a_later_failure_does_not_reset_the_streak() -> None:
    """A webhook's retries come from the retry tiers' consumers, which may be
    other deliverer instances than the one reading its `deliveries` partition:
    its `attempts` records are not in time order. `_count` keeps
    last_success/last_failure by time, but a success older than the newest
    failure still sets the streak to 0 ('failed attempts since the last
    success' is then 0 while the newest attempt failed)."""
    store = MemoryStore()
    fold.apply(store, routed(webhooks=("wh_1",)), now_ms=NOW, retention_ms=7 * DAY)
    fold.apply(store, routed(event="evt_2", webhooks=("wh_1",)), now_ms=NOW,
               retention_ms=7 * DAY)
    fold.apply(store, filed("failure", offset=1, at=T0 + timedelta(seconds=6), code=500),
               now_ms=NOW, retention_ms=7 * DAY)
    fold.apply(store, filed("success", offset=2, event="evt_2", at=T0 + timedelta(seconds=5),
                            code=200), now_ms=NOW, retention_ms=7 * DAY)
    stats = queries.stats(store, APP, "wh_1", now_ms=NOW + 10_000)
    assert stats.failure_streak == 1, stats


class _Timed(MemoryStore):
    """A store that remembers when each key was last written (the changelog's
    record time of its latest value)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.written: dict[bytes, int] = {}

    def put(self, key: bytes, value: bytes) -> None:
        super().put(key, value)
        self.written[key] = self.now

    def delete(self, key: bytes) -> None:
        super().delete(key)
        self.written.pop(key, None)


@pytest.mark.parametrize("retention_s", [7 * 86400.0, 3600.0])
def test_no_key_outlives_its_changelog_record(retention_s: float) -> None:
    """The changelog is compact,delete with retention.ms = retention + the retry
    schedule + a day: a key not written again within that is deleted from it,
    and the next owner (or a standby, or a cold restart) recovers without it
    while this instance keeps it. W rows (last success and failure, streak,
    dead letters, breaker) never expire and are written only when an attempt
    is filed; with a 1h retention, S (hour) counters live a week. A webhook that
    went quiet (disabled after failing, say) loses them at the next failover."""
    topics = Topics("t.", retry_delays=(5, 300, 1800, 7200, 18000, 36000, 36000),
                    event_log_retention=retention_s)
    [spec] = [s for s in topics.specs() if s.name == topics.eventlog_changelog]
    deletes = "delete" in spec.config["cleanup.policy"].split(",")
    changelog_ms = int(spec.config.get("retention.ms", "-1"))
    store = _Timed()
    store.now = NOW
    retention_ms = int(retention_s * 1000)
    fold.apply(store, routed(), now_ms=NOW, retention_ms=retention_ms)
    fold.apply(store, filed("failure", offset=1, code=500), now_ms=NOW, retention_ms=retention_ms)
    fold.apply(store, filed("dead", offset=2), now_ms=NOW, retention_ms=retention_ms)
    later = NOW + changelog_ms + DAY  # compaction and deletion had a day to run
    store.now = later
    while fold.sweep(store, now_ms=later, retention_ms=retention_ms):
        pass
    if deletes and changelog_ms > 0:
        gone = sorted({k[:1] for k, at in store.written.items() if at < later - changelog_ms})
        assert not gone, (f"kept here, deleted from the changelog (by tag): {gone}; "
                          f"changelog retention {changelog_ms / 3_600_000:.0f}h")


# -- replay jobs: a job started twice ----------------------------------------------

class _JobsTable:
    def __init__(self) -> None:
        self.db = MemoryStore()
        self.pending: list[asyncio.Future] = []
        self.data = SimpleNamespace(_dbs={0: _Iterable(self.db)},
                                    _db_for_partition=lambda p: _Iterable(self.db))

    def send_changelog(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


class _Iterable:
    """MemoryStore with rocksdict's iterator, as PartitionStore reads it."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def get(self, key):  # type: ignore[no-untyped-def]
        return self._store.get(key)

    def put(self, key, value):  # type: ignore[no-untyped-def]
        self._store.put(key, value)

    def delete(self, key):  # type: ignore[no-untyped-def]
        self._store.delete(key)

    def write(self, batch):  # type: ignore[no-untyped-def]
        """rocksdict's WriteBatch (PartitionStore.commit): not replayed into
        this stand-in; the test counts job starts, not rows."""

    def iter(self):  # type: ignore[no-untyped-def]
        store = self._store

        class It:
            def seek(self, key):  # type: ignore[no-untyped-def]
                self._items = [kv for kv in store.items() if kv[0] >= key]
                self._at = 0

            def valid(self):  # type: ignore[no-untyped-def]
                return self._at < len(self._items)

            def key(self):  # type: ignore[no-untyped-def]
                return self._items[self._at][0]

            def value(self):  # type: ignore[no-untyped-def]
                return self._items[self._at][1]

            def next(self):  # type: ignore[no-untyped-def]
                self._at += 1

        return It()


async def test_a_replay_job_is_not_started_twice_when_resume_runs_while_it_starts(
        monkeypatch) -> None:
    """start_replay saves the job row (state running) and awaits its changelog
    ack; only then does it put the job in `jobs`. The 5-second resume_jobs that
    runs in between finds a running row whose key is not in `jobs` (it is in
    `_replay_requests`, which it does not look at) and starts it; start_replay
    then starts it again: two tasks replay the same dead letters (each
    re-enqueued twice), and the first is no longer in `jobs` to be cancelled."""
    runs: list[str] = []
    release = asyncio.Event()

    async def run(row, **_):  # type: ignore[no-untyped-def]
        runs.append(row.job.id)
        await release.wait()

    async def window(*_):  # type: ignore[no-untyped-def]
        return 0, 10

    monkeypatch.setattr(replay, "run", run)
    monkeypatch.setattr(replay, "window", window)
    service = object.__new__(eventlog_app.EventLog)
    table = _JobsTable()
    changelog = "t.eventlog-log-changelog"
    service.settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t."),
                                jwt_secret="test-secret-of-at-least-32-bytes-long")
    service.partitions = PARTITIONS
    service.topics = Topics("t.")
    service.table = table
    service.changelog = changelog
    service.metrics = eventlog_app.Metrics()
    service.jobs = {}
    service._replay_requests = set()
    service._resumed_generation = None
    service._assigned = True

    async def send(partition, key, value):  # type: ignore[no-untyped-def]
        return table.send_changelog(partition, key, value)

    service._send_changelog = send  # type: ignore[method-assign]

    async def partitions_for(topic):  # type: ignore[no-untyped-def]
        return {0}

    service.producer = SimpleNamespace(partitions_for=partitions_for)
    service.app = SimpleNamespace(
        rebalancing=False, consumer_generation_id=1,
        tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False)),
        assignor=SimpleNamespace(is_active=lambda tp: True,
                                 assigned_actives=lambda: {TP(changelog, 0)}))
    client = await _client(service)
    try:
        posted = asyncio.create_task(client.post(
            f"/v1/apps/{APP}/webhooks/wh_1/replay", headers=auth(APP), json={}))
        while not table.pending:  # the job row is written; its ack awaited
            await asyncio.sleep(0.01)
        await service.resume_jobs()  # the timer's turn comes
        for future in table.pending:
            future.set_result(None)
        response = await posted
        assert response.status == 202, await response.text()
        await asyncio.sleep(0.05)
        assert len(runs) == 1, f"the job was started {len(runs)} times: {runs}"
    finally:
        release.set()
        for task in list(service.jobs.values()):
            task.cancel()
        await client.close()
