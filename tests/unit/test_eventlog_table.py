"""PartitionStore.commit on a real RocksDB: nothing reaches the database before
the changelog acknowledged it, and the changelog offset a restart replays from
is written with the keys, never before them (a crash between Faust's offset
callback and the keys left a warm restart past keys it lacked: `make chaos`,
fault eventlog, found 3 events never shown delivered)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import rocksdict
from aiokafka.errors import KafkaError

from services.eventlog.table import OFFSET_KEY, PartitionStore


class _Table:
    def __init__(self, db: rocksdict.Rdict) -> None:
        self.data = SimpleNamespace(_dbs={0: db}, _db_for_partition=lambda p: db)
        self.sent: list[asyncio.Future] = []
        self.changelog_topic = SimpleNamespace(send_soon=self._send)

    def _send(self, **_: object) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.sent.append(future)
        return future


async def test_keys_and_their_offset_reach_the_database_together_after_the_acks(tmp_path):
    db = rocksdict.Rdict(str(tmp_path / "p0"), options=rocksdict.Options(raw_mode=True))
    try:
        table = _Table(db)
        store = PartitionStore(table, 0)
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
    finally:
        db.close()
