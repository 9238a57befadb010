"""One partition of the event log's Faust table as a `Store`: its RocksDB
(rocksdict, raw bytes keys) read and written directly, every write and delete
also sent to the table's changelog (Faust's recovery and standbys replay it).

Faust tables write only from inside an agent, to the partition of the record
being processed, and have no ordered scans (docs/design/event-log.md): this
facade writes to a partition it is given, from an agent, a timer or a
request, and scans. Callers write only to partitions this instance actively
owns. `pending` holds the changelog sends not yet known to be acknowledged:
the agent awaits them before it acknowledges the update they stand for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any


class NotOpen(Exception):
    """The partition's database is not open here (revoked, or stopping)."""


class PartitionStore:
    def __init__(self, table: Any, partition: int, *, open_it: bool = False) -> None:
        """`open_it`: open the partition's database if it is not (as Faust does
        for the record an agent is processing); else NotOpen: Faust forgets a
        revoked partition's database without closing it, and opening it again
        would fail on its lock."""
        self._table = table
        self.partition = partition
        if open_it:
            self._db = table.data._db_for_partition(partition)
        else:
            db = table.data._dbs.get(partition)
            if db is None:
                raise NotOpen(f"partition {partition} is not open here")
            self._db = db
        self.pending: list[asyncio.Future] = []

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)
        self._send(key, value)

    def delete(self, key: bytes) -> None:
        self._db.delete(key)
        self._send(key, None)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(max(prefix, start or prefix))
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            it.next()

    def _send(self, key: bytes, value: bytes | None) -> None:
        self.pending.append(self._table.send_changelog(
            self.partition, key, value, key_serializer="raw", value_serializer="raw"))

    async def acknowledged(self) -> None:
        """Until every changelog write so far is acknowledged; raises the first
        failure."""
        pending, self.pending = self.pending, []
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
