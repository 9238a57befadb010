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
