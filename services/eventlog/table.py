"""One partition of the event log's Faust table as a `Store`: its RocksDB
(rocksdict, raw bytes keys) read and written directly, every write and delete
sent to the table's changelog first (Faust's recovery and standbys replay it).

Faust tables write only from inside an agent, to the partition of the record
being processed, and have no ordered scans (docs/design/event-log.md): this
facade writes to a partition it is given, from an agent, a timer or a
request, and scans. Callers write only to partitions this instance actively
owns, through an Overlay (store.py) that they commit: the changelog first,
acknowledged, then the database, so a crash in between leaves the database
without what the changelog may lack, and the records are filed again."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from rocksdict import WriteBatch

from services.eventlog.store import Overlay

T = TypeVar("T")


# Sends one changelog record (partition, key, value); returns its future.
Send = Callable[[int, bytes, bytes | None], Awaitable[asyncio.Future]]
# A commit that makes no progress for this long (no send taken by the
# producer, no acknowledgement) fails (the file agent then ends the process,
# and the batch is filed again after the restart). A deadline on progress,
# not on the whole commit: a big commit on a slow but answering broker (a
# quota) would otherwise fail at the same point after every restart.
ACK_TIMEOUT = 60.0


class NotOpen(Exception):
    """The partition's database is not open here (revoked, or stopping)."""


class PartitionStore:
    def __init__(self, table: Any, partition: int, *, open_it: bool = False,
                 send: Send | None = None, may_write: Callable[[], bool] | None = None) -> None:
        """`open_it`: open the partition's database if it is not (as Faust does
        for the record an agent is processing); else NotOpen: Faust forgets a
        revoked partition's database without closing it, and opening it again
        would fail on its lock (hold a store no longer than the work at hand).
        `may_write`: asked, under the partition's commit lock, before a commit
        sends anything (NotOpen when false): writers Faust's revocation does
        not wait for (timers, tasks) pass whether this instance still owns
        the partition, outside a rebalance."""
        self._table = table
        self.partition = partition
        self._send = send
        self._may_write = may_write
        if open_it:
            self._db = table.data._db_for_partition(partition)
        else:
            db = table.data._dbs.get(partition)
            if db is None:
                raise NotOpen(f"partition {partition} is not open here")
            self._db = db

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        raise TypeError("write through an Overlay and commit it")

    def delete(self, key: bytes) -> None:
        raise TypeError("write through an Overlay and commit it")

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(max(prefix, start or prefix))
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            it.next()

    async def update(self, compute: Callable[[Overlay], T]) -> T:
        """Run `compute` on an Overlay of this store and commit its writes, the
        partition's commit lock held from the first read to the last write:
        another writer's commit (the file agent's, the sweep's, a job's) can
        neither land between what `compute` read and what it wrote (its writes
        undone by a stale copy) nor read around this one's in flight."""
        async with _lock(self._table, self.partition):
            staged = Overlay(self)
            result = compute(staged)
            await self._commit(staged.writes)
            return result

    async def commit(self, writes: dict[bytes, bytes | None]) -> None:
        """Send `writes` to the changelog, and once every one is acknowledged,
        write them to the database in one batch, with the changelog offset they
        reach. Raises the first failure, having written nothing locally:
        filing the same records again after a restart writes them all again.
        Only for writes that depend on nothing read from the store (else
        `update`).

        Through the service's own producer (`send`), not `table.send_changelog`:
        Faust buffers those sends, and its callback records the persisted
        offset (from which a restart replays the changelog) in the database as
        each send is acknowledged, before these keys are written there; a crash
        in between would leave the database past keys it lacks. Commits of one
        partition run one at a time, so the offset written never passes
        another commit's keys."""
        async with _lock(self._table, self.partition):
            await self._commit(writes)

    def _current(self) -> bool:
        """Whether this store's database is the one Faust holds for the
        partition (not forgotten at a revocation, nor opened again since)."""
        return self._table.data._dbs.get(self.partition) is self._db

    async def _commit(self, writes: dict[bytes, bytes | None]) -> None:
        if not writes:
            return
        if self._send is None:
            raise TypeError("a store opened without a changelog sender is read-only")
        if not self._current() or (self._may_write is not None and not self._may_write()):
            raise NotOpen(f"partition {self.partition} may not be written here now")
        sent = []
        for key, value in writes.items():
            async with asyncio.timeout(ACK_TIMEOUT):
                sent.append(await self._send(self.partition, key, value))
        pending: set[asyncio.Future] = set(sent)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=ACK_TIMEOUT,
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    raise TimeoutError(f"no changelog acknowledgement for {ACK_TIMEOUT}s "
                                       f"({len(pending)} of {len(sent)} unanswered)")
                for future in done:
                    if future.cancelled():
                        raise RuntimeError("a changelog send was cancelled (producer stopped?)")
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
        finally:
            for future in pending:
                future.cancel()
        if not self._current():
            # Revoked meanwhile: the database is read from its persisted
            # offset when it is opened again, these records included.
            raise NotOpen(f"partition {self.partition} was revoked during a commit")
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        offsets = [getattr(future.result(), "offset", None) for future in sent]
        if offsets and all(isinstance(o, int) for o in offsets):
            batch.put(OFFSET_KEY, str(max(offsets)).encode())  # type: ignore[type-var]
        self._db.write(batch)


# Where Faust keeps a partition database's changelog offset (stores/rocksdb.py).
OFFSET_KEY = b"__faust\0offset__"
# The commit locks of each table's partitions, by the table's id (dropped when
# the table is collected, so an id reused later starts afresh). Not a
# WeakKeyDictionary: its lookups compare keys with ==, and a Faust table is a
# Mapping whose equality decodes every item (a commit cost the table's size).
_locks: dict[int, dict[int, asyncio.Lock]] = {}


def _lock(table: Any, partition: int) -> asyncio.Lock:
    locks = _locks.get(id(table))
    if locks is None:
        locks = _locks[id(table)] = {}
        weakref.finalize(table, _locks.pop, id(table), None)
    return locks.setdefault(partition, asyncio.Lock())


async def quiesce(table: Any) -> None:
    """Wait until no commit of the table's partitions is in flight (those
    waiting for a lock then find, under it, that they may not write)."""
    for lock in list(_locks.get(id(table), {}).values()):
        async with lock:
            pass
