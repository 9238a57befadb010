"""PartitionStore.commit on a real RocksDB: nothing reaches the database before
the changelog acknowledged it, and the changelog offset a restart replays from
is written with the keys, never before them (a crash between Faust's offset
callback and the keys left a warm restart past keys it lacked: `make chaos`,
fault eventlog, found 3 events never shown delivered)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import rocksdict
from aiokafka.errors import KafkaError

from services.eventlog import table as table_module
from services.eventlog.table import OFFSET_KEY, PartitionStore


class _Table:
    def __init__(self, db: rocksdict.Rdict) -> None:
        self.data = SimpleNamespace(_dbs={0: db}, _db_for_partition=lambda p: db)
        self.sent: list[asyncio.Future] = []

    async def send(self, partition: int, key: bytes, value: bytes | None) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.sent.append(future)
        return future


async def test_keys_and_their_offset_reach_the_database_together_after_the_acks(tmp_path):
    db = rocksdict.Rdict(str(tmp_path / "p0"), options=rocksdict.Options(raw_mode=True))
    try:
        table = _Table(db)
        store = PartitionStore(table, 0, send=table.send)
        commit = asyncio.create_task(store.commit({b"Ea": b"1", b"Eb": b"2", b"Ec": None}))
        while len(table.sent) < 3:
            await asyncio.sleep(0)
        assert db.get(b"Ea") is None and db.get(OFFSET_KEY) is None
        for n, future in enumerate(table.sent):
            future.set_result(SimpleNamespace(offset=40 + n))
        await commit
        assert (db.get(b"Ea"), db.get(b"Eb"), db.get(OFFSET_KEY)) == (b"1", b"2", b"42")

        table.sent.clear()
        failing = asyncio.create_task(store.commit({b"Ed": b"3"}))
        while not table.sent:
            await asyncio.sleep(0)
        table.sent[0].set_exception(KafkaError("refused"))
        try:
            await failing
        except KafkaError:
            pass
        else:
            raise AssertionError("a refused changelog write must raise")
        assert db.get(b"Ed") is None and db.get(OFFSET_KEY) == b"42"

        with pytest.raises(TypeError, match="read-only"):
            await PartitionStore(table, 0).commit({b"Ee": b"4"})
        assert db.get(b"Ee") is None
    finally:
        db.close()


async def test_a_changelog_write_never_acknowledged_fails_the_commit(tmp_path, monkeypatch):
    """A send stuck in a producer that never answers (a lost leader, a broken
    connection) fails the commit at the deadline, having written nothing, so the
    file agent ends the process and the batch is filed again after the restart,
    instead of the agent waiting for ever while the event log falls behind."""
    monkeypatch.setattr(table_module, "ACK_TIMEOUT", 0.05)
    db = rocksdict.Rdict(str(tmp_path / "p0"), options=rocksdict.Options(raw_mode=True))
    try:
        table = _Table(db)
        with pytest.raises(TimeoutError):
            await PartitionStore(table, 0, send=table.send).commit({b"Ea": b"1"})
        assert table.sent and db.get(b"Ea") is None and db.get(OFFSET_KEY) is None
    finally:
        db.close()


async def test_a_commit_that_progresses_slowly_is_not_failed_at_the_deadline(
        tmp_path, monkeypatch):
    """The deadline is for a changelog that stopped answering, not for a big
    commit on a slow (throttled by a quota, say) but answering broker: failing
    a commit whose acks keep coming ends the process, and after the restart
    the same batch is filed again, fails again at the same deadline, for ever."""
    monkeypatch.setattr(table_module, "ACK_TIMEOUT", 0.2)
    db = rocksdict.Rdict(str(tmp_path / "p0"), options=rocksdict.Options(raw_mode=True))
    try:
        table = _Table(db)
        writes = {f"E{n:03}".encode(): b"v" for n in range(8)}
        commit = asyncio.create_task(PartitionStore(table, 0, send=table.send).commit(writes))
        while len(table.sent) < len(writes):
            await asyncio.sleep(0.001)
        for n, future in enumerate(table.sent):
            await asyncio.sleep(0.05)  # one ack every 50 ms: 0.4 s in all
            if future.done():
                break  # cancelled: the commit failed
            future.set_result(SimpleNamespace(offset=n))
        await asyncio.wait_for(commit, 5)
        assert db.get(b"E007") == b"v" and db.get(OFFSET_KEY) == b"7"
    finally:
        db.close()


# -- the service's writers of one partition: the file agent, the sweep, replay jobs,
# -- and Faust's rebalances, on a real RocksDB -------------------------------------

import gc  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from faust.types import TP  # noqa: E402

from schemas.attempts import Attempt  # noqa: E402
from schemas.eventlog import Filed, Routed, update_decoder, update_encoder  # noqa: E402
from services.common.config import KafkaSettings  # noqa: E402
from services.common.topics import Topics  # noqa: E402
from services.eventlog import app as eventlog_app  # noqa: E402
from services.eventlog import fold, keys, rows  # noqa: E402
from services.eventlog.settings import Settings  # noqa: E402
from services.eventlog.store import MemoryStore  # noqa: E402

APP = "app_1"
CHANGELOG = "t.eventlog-log-changelog"


class _Acks:
    """The changelog as the service's producer sees it: each send's future, answered
    by the test (`hold`) or at once, with increasing offsets."""

    def __init__(self) -> None:
        self.hold = False
        self.pending: list[asyncio.Future] = []
        self.records: list[tuple[int, bytes, bytes | None]] = []

    async def send(self, partition: int, key: bytes, value: bytes | None) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.records.append((partition, key, value))
        if self.hold:
            self.pending.append(future)
        else:
            future.set_result(SimpleNamespace(offset=len(self.records) - 1))
        return future

    def release(self) -> None:
        self.hold = False
        for future in self.pending:
            future.set_result(SimpleNamespace(offset=len(self.records)))
        self.pending.clear()


class _FaustTable:
    """What PartitionStore uses of Faust's table: its partition DBs, opened on
    demand (as `_db_for_partition`), forgotten on revocation (`_dbs.pop`)."""

    def __init__(self, path) -> None:  # type: ignore[no-untyped-def]
        self.path = path
        self._dbs: dict[int, rocksdict.Rdict] = {}
        self.data = SimpleNamespace(_dbs=self._dbs, _db_for_partition=self.open)

    def open(self, partition: int) -> rocksdict.Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = rocksdict.Rdict(
                str(self.path / f"p{partition}"), options=rocksdict.Options(raw_mode=True))
        return self._dbs[partition]


def _service(table: _FaustTable, acks: _Acks) -> eventlog_app.EventLog:
    service = object.__new__(eventlog_app.EventLog)
    service.settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t."),
                                jwt_secret="test-secret-of-at-least-32-bytes-long")
    service.partitions = 1
    service.topics = Topics("t.")
    service.table = table
    service.changelog = CHANGELOG
    service.metrics = eventlog_app.Metrics()
    service.jobs = {}
    service._replay_requests = set()
    service._resumed_generation = None
    service._assigned = True
    service._send_changelog = acks.send  # type: ignore[method-assign]
    service.app = SimpleNamespace(
        rebalancing=False, consumer_generation_id=1,
        tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False)),
        assignor=SimpleNamespace(is_active=lambda tp: True,
                                 assigned_actives=lambda: {TP(CHANGELOG, 0)}))
    return service


@pytest.fixture(autouse=True)
def _batches_of_the_fake_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file agent takes its batches with take_events_soon, which works on
    a Faust stream's internals (tests/unit/test_eventlog_batching.py); here it
    takes them from the fake stream below."""
    monkeypatch.setattr(eventlog_app, "take_events_soon",
                        lambda stream, max_, within: stream.take_events(max_, within))


class _Stream:
    """A noack stream of eventlog.updates handing the file agent `batches`, then
    waiting (an idle topic) until `done` is set."""

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = batches
        self.acked: list[int] = []
        self.done = asyncio.Event()
        self.taken = asyncio.Event()

    def noack(self):  # type: ignore[no-untyped-def]
        return self

    async def take_events(self, n, within):  # type: ignore[no-untyped-def]
        offset = 0
        for values in self.batches:
            batch = []
            for value in values:
                offset += 1
                batch.append(SimpleNamespace(message=SimpleNamespace(
                    value=value, topic="t.eventlog.updates", partition=0, offset=offset,
                    generation_id=1)))
            yield batch
        self.taken.set()
        await self.done.wait()

    async def ack(self, event) -> None:  # type: ignore[no-untyped-def]
        self.acked.append(event.message.offset)


def _routed(at_ms: int) -> bytes:
    return update_encoder.encode(Routed(
        app_id=APP, event_id="evt_1", event_type="message.received",
        created_at=datetime.fromtimestamp(at_ms / 1000, UTC),
        source="events", partition=0, offset=7, webhook_ids=["wh_1"]))


def _failure(at_ms: int, offset: int) -> bytes:
    return update_encoder.encode(Filed(attempt=Attempt(
        webhook_id="wh_1", event_id="evt_1", event_type="message.received", attempt=offset,
        at=datetime.fromtimestamp(at_ms / 1000, UTC), result="failure", app_id=APP,
        status_code=500, latency_ms=12.0), partition=0, offset=offset))


def _seed(table: _FaustTable, retention_ms: int, at_ms: int) -> None:
    """An event of wh_1, a failure filed at `at_ms` (its W row, due for renewal
    half a retention later), written straight into partition 0's DB."""
    memory = MemoryStore()
    for value in (_routed(at_ms), _failure(at_ms, 1)):
        fold.apply(memory, update_decoder.decode(value), now_ms=at_ms, retention_ms=retention_ms)
    db = table.open(0)
    for key, value in memory.items():
        db[key] = value


async def test_a_sweep_does_not_undo_what_the_file_agent_commits_meanwhile(tmp_path) -> None:
    """The sweep reads a webhook's W row (due for renewal), stages `put(W, the
    value read)`, and then waits for the partition's commit lock, held by the
    file agent awaiting the acks of a commit of the same W row (a new failure:
    streak 2). Once the agent wrote it, the sweep commits its copy: the streak
    goes back to 1, in the database and in the changelog, for good. (The other
    way round, an agent batch read before a sweep's commit rewrites the E and D
    rows of an event the sweep just expired, without its T key: never expired.)"""
    table = _FaustTable(tmp_path)
    acks = _Acks()
    service = _service(table, acks)
    retention_ms = int(service.settings.retention * 1000)
    now_ms = int(time.time() * 1000)
    _seed(table, retention_ms, now_ms - retention_ms * 6 // 10)
    wkey = keys.webhook_key(APP, "wh_1")
    assert rows.webhook_row(table.open(0)[wkey]).streak == 1

    acks.hold = True
    stream = _Stream([[_failure(now_ms, 2)]])
    agent = asyncio.create_task(service._file(stream))  # type: ignore[arg-type]
    try:
        while not acks.pending:
            await asyncio.sleep(0.001)
        sweep = asyncio.create_task(service.sweep())
        for _ in range(20):
            await asyncio.sleep(0)
        acks.release()
        await asyncio.wait_for(sweep, 5)
        await asyncio.wait_for(stream.taken.wait(), 5)
        assert stream.acked == [1]
        streak = rows.webhook_row(table.open(0)[wkey]).streak
        last = [v for _, k, v in acks.records if k == wkey][-1]
        assert (streak, rows.webhook_row(last).streak) == (2, 2), (
            "the sweep's stale copy of the W row replaced the agent's, "
            f"db streak {streak}, changelog streak {rows.webhook_row(last).streak}")
    finally:
        stream.done.set()
        await asyncio.wait_for(agent, 5)
        table._dbs.clear()


async def test_the_file_agent_lets_go_of_a_partition_db_faust_revoked(tmp_path) -> None:
    """Faust forgets a revoked partition's DB (`_dbs.pop`, no close: the handle
    closes when the last reference goes) and opens it again when the partition
    comes back, as a standby (at once: the recovery reads its offset) or an
    active (30 tries a second apart, then the worker crashes). The file agent
    kept its last batch's stores, and so the DB, until the next batch: on an
    idle eventlog.updates, the reopening fails ('lock hold by current
    process') and the instance crashes at the rebalance."""
    table = _FaustTable(tmp_path)
    acks = _Acks()
    service = _service(table, acks)
    now_ms = int(time.time() * 1000)
    stream = _Stream([[_routed(now_ms)]])
    agent = asyncio.create_task(service._file(stream))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(stream.taken.wait(), 5)
        assert stream.acked == [1]
        table._dbs.pop(0)  # revoked
        gc.collect()
        db = table.open(0)  # assigned again (raises while another handle is open)
        assert db.get(keys.id_key(APP, "evt_1")) is not None
    finally:
        stream.done.set()
        await asyncio.wait_for(agent, 5)
        table._dbs.clear()


async def _saved(service, row) -> None:  # type: ignore[no-untyped-def]
    pending = service._save_job(row)
    if pending is not None:
        await pending


async def test_no_commit_runs_on_past_a_revocation(tmp_path) -> None:
    """The sweep and replay jobs write from timers and tasks, which Faust's
    revocation does not wait for (it waits for the agents' events only): a
    sweep's commit still sending when the partition is revoked goes on sending
    once the group gave the partition to another instance, its records
    interleaved with the new owner's, and then writes into this instance's DB
    (its standby, next) the offset of its last record: past the new owner's
    records before it, which that DB never gets. A save started while the group
    rebalances is sent all the same. The revocation must wait for the commits
    in flight, and none may start until the assignment is known again."""
    table = _FaustTable(tmp_path)
    acks = _Acks()
    service = _service(table, acks)
    table.open(0)
    from services.eventlog import replay
    from schemas.eventlog_api import ReplayJob
    row = replay.JobRow(job=ReplayJob(id="rj_1", webhook_id="wh_1", state="running",
                                      created_at=datetime.now(UTC), total=1),
                        app_id=APP, dlq_partition=0, next_offset=0, end_offset=1)
    try:
        acks.hold = True
        saving = asyncio.ensure_future(service._save_job(row))
        while not acks.pending:
            await asyncio.sleep(0.001)
        service.app.rebalancing = True  # on_rebalance_start: the revocation begins
        sent = len(acks.records)
        late = asyncio.ensure_future(_saved(service, row))
        await asyncio.sleep(0.02)
        assert len(acks.records) == sent, "a save started during the rebalance was sent"
        revoking = asyncio.ensure_future(service._on_revoked(None, {TP(CHANGELOG, 0)}))
        await asyncio.sleep(0.02)
        assert not revoking.done(), "the revocation did not wait for the commit in flight"
        acks.release()
        await asyncio.wait_for(saving, 5)
        await asyncio.wait_for(revoking, 5)
        with pytest.raises((eventlog_app.NotOwner, table_module.NotOpen)):
            await asyncio.wait_for(late, 5)
        assert len(acks.records) == sent
    finally:
        table._dbs.clear()


async def test_sigterm_keeps_the_changelog_producer_until_the_agents_are_done(tmp_path) -> None:
    """mode stops a worker's services in reverse: EventLogSupport (the HTTP
    server, the jobs, the service's producer) before the Faust app, whose stop
    then waits for the agents to finish their events. A file agent's commit in
    that window sends through a stopped producer, fails, and the agent ends
    the process (exit 70) instead of the clean leave a SIGTERM is for (the
    partitions then wait out the session timeout). The producer must outlive
    the app's consumer: stopped at `on_before_shutdown`, after it."""
    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t."),
                        jwt_secret="test-secret-of-at-least-32-bytes-long",
                        data_dir=str(tmp_path))
    service = eventlog_app.EventLog(settings, 1)
    stopped: list[str] = []

    async def stop() -> None:
        stopped.append("producer")

    service.producer = SimpleNamespace(stop=stop)  # type: ignore[assignment]
    support = eventlog_app.EventLogSupport(service)
    await support.on_stop()
    assert stopped == [], "the producer stopped before the app's agents"
    await service.app.on_before_shutdown.send()
    assert stopped == ["producer"]


async def test_finding_a_partitions_lock_never_compares_the_table():
    """Faust's Table is a Mapping: equality compares every item. The commit
    locks were kept in a WeakKeyDictionary keyed by the table, whose lookups
    compare keys with ==, so every commit decoded the whole table: with a
    million events loaded, filing fell from ~3,000 to ~100 updates a second
    and /metrics went unanswered for 30 s (make bench's event log run found
    it; py-spy showed Mapping.__eq__ under _lock). Cost must follow the work,
    not the table's size."""

    class Table(dict):
        def __eq__(self, other):  # type: ignore[no-untyped-def]
            raise AssertionError("the table was compared item by item")

        __hash__ = object.__hash__

    table = Table()
    first = table_module._lock(table, 0)
    assert table_module._lock(table, 0) is first
    assert table_module._lock(table, 1) is not first
    await table_module.quiesce(table)


def test_the_rekey_agents_sends_do_not_linger_their_throughput_away(tmp_path) -> None:
    """The rekey agent awaits each update's acknowledgement before it takes its
    next attempts record (REKEY_CONCURRENCY actors), so the Faust producer's
    linger bounds re-keying at REKEY_CONCURRENCY / linger updates a second,
    whatever the cores. With the 20 ms of background writes it re-keyed
    552-683 attempts/s on a real broker (6,000-10,000 attempts written before
    the event log started), 1,247-1,803/s with 5 ms and 1,073-2,684/s with 0:
    the event log fell behind any flow of more than ~650 attempts/s. Its bound
    must stay above the filing rate the README reports (1,615 updates/s)."""
    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t."),
                        jwt_secret="test-secret-of-at-least-32-bytes-long",
                        data_dir=str(tmp_path))
    service = eventlog_app.EventLog(settings, 1)
    linger = service.app.conf.producer_linger
    assert linger == 0 or eventlog_app.REKEY_CONCURRENCY / linger > 1615, linger
