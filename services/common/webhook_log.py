"""Which record of the compacted `webhooks` topic wins: the conditional-append
rules that every reader applies, record by record, in log order, so that every
instance of every service that reads the same log holds the same webhooks.

Pure: no I/O, no Kafka. `WebhooksView` feeds it the records it reads.

The rules, for a record of webhook `id` read from partition `p`:

- A tombstone deletes, and the id is remembered as deleted: a delete is final.
- A record for a deleted id is ignored. In the partition of its tombstone it
  still counts against its app's limit, as a create there would (or as a
  survivor of compaction), until a tombstone for it follows there (ingest's
  repair): a reader that never saw the tombstone (the cleaner drops a tombstone
  delete.retention.ms after cleaning it, while a stale write that followed it
  can still sit uncleaned, in the active segment of a quiet partition) takes
  that record as a survivor and counts it, and a create between the two must
  be judged alike by both readers.
- A record for an id whose current record lives in another partition is ignored
  (writers keep each id in one partition; see `WebhooksView.write`), unless it
  is in the id's home partition (where every writer puts the id: `home`) and
  the current one is not: then the home record is judged as if the other were
  absent, and replaces it if it holds. Readers interleave partitions in any
  order, so without this a record written into a foreign partition (by a
  hostile or broken producer) won in the readers that happened to read it first
  and lost in the others.
  A record outside its id's home partition is not judged against, and counts
  against, no app's limit: it ends when the id's home records are read, which
  readers do at different points, so a create judged with it counted held in
  some readers and lost in the others. It is repaired with a tombstone there
  once it loses or ends (a tombstone outside the home binds no reader): else a
  fresh reader takes it for the webhook once the home tombstone is cleaned.
- With a current record of version `v`: version `v + 1` is applied; the same
  version with the same bytes is a no-op (a repair, or a duplicate); a version
  above `v + 1` is applied (records in between were compacted away: no writer
  can base a write on a version that an in-order reader has not seen); a legacy
  version 0 over a version 0 is applied (last writer wins, as before versions);
  anything else is ignored as stale.
- With no current record, version 0 or 1 is a create: applied only while the
  app has fewer than the record's `app_limit` live webhooks in this partition
  (0: not checked). A higher version, or a repair, is applied (its history was
  compacted away).

Compaction keeps only the last record of each key, so a record that lost must
not stay the last one for its key: `take_repairs` says, for each id whose last
record lost, in which partition to append the current record again (a no-op
for every reader; marked as a repair) or a tombstone (the id is deleted or was
never created). Then compaction never changes what readers conclude: a reader
of the compacted log ends where a reader of the whole log ends, provided the
cleaner compacted no losing record before its repair was appended.

Memory: per live webhook a `Current` (version, app id, partition, 8-byte
digest), about 200 bytes; the deleted ids in an LRU of `deleted_capacity` ids
(100,000 by default, about 17 MB with the ids). An id evicted from it is
forgotten: a write for it would count as a create or as history, but no writer
writes for an id it has not got. A deleted id's stale write that still counts
(above) keeps a `Current` until its repair, seconds.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal

DELETED_CAPACITY = 100_000

Kind = Literal["created", "updated", "deleted", "unchanged", "ignored"]


def digest_of(value: bytes) -> bytes:
    """The content hash a record is compared by (its exact bytes)."""
    return hashlib.blake2b(value, digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class Written:
    """What the rules read of a record that is not a tombstone."""

    version: int
    app_id: str
    app_limit: int
    digest: bytes
    # A repair: a copy of a record that was applied. When it is the first record a
    # reader sees of its id (compaction dropped the original), it is not judged
    # against the app's limit again: other webhooks' records may now precede it.
    is_repair: bool = False


@dataclass(frozen=True, slots=True)
class Current:
    """What the rules keep of a webhook's current record."""

    version: int
    app_id: str
    partition: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    reason: str = ""
    repair: bool = False  # a record that lost and must not stay last for its key

    @property
    def holds(self) -> bool:
        """Whether the record is now the current state (applied, or already was)."""
        return self.kind != "ignored"


_UNCHANGED = Outcome("unchanged")


@dataclass(frozen=True, slots=True)
class Repair:
    """Append to `partition` the id's current record again, or a tombstone."""

    webhook_id: str
    partition: int
    tombstone: bool


class WebhookLog:
    def __init__(self, deleted_capacity: int = DELETED_CAPACITY,
                 home: Callable[[str], int | None] | None = None) -> None:
        """`home`: the partition an id's records belong in (None: unknown)."""
        self._home = home
        self._current: dict[str, Current] = {}
        self._deleted: OrderedDict[str, int] = OrderedDict()  # id -> the tombstone's partition
        self._deleted_capacity = deleted_capacity
        # Deleted ids whose later records still count against the limit: what a
        # reader that never saw the tombstone holds (see `_shadow`), and their count.
        self._shadows: dict[str, Current] = {}
        self._shadow_live: Counter[tuple[int, str]] = Counter()
        self._live: Counter[tuple[int, str]] = Counter()  # (partition, app id) -> webhooks
        # (id, partition) whose last record lost there: an ordered set
        self._repairs: dict[tuple[str, int], None] = {}

    def __len__(self) -> int:
        return len(self._current)

    def current(self, webhook_id: str) -> Current | None:
        return self._current.get(webhook_id)

    def is_deleted(self, webhook_id: str) -> bool:
        return webhook_id in self._deleted

    def live(self, partition: int, app_id: str) -> int:
        """How many webhooks of `app_id` live in `partition` (a create is judged
        against these and the deleted ids' records that still count)."""
        return self._live[partition, app_id]

    def apply(self, partition: int, webhook_id: str, record: Written | None) -> Outcome:
        """Apply the next record of `partition` (None: a tombstone)."""
        outcome = (self._tombstone(partition, webhook_id) if record is None
                   else self._written(partition, webhook_id, record))
        self._note_repair(partition, webhook_id, outcome)
        return outcome

    def apply_unreadable(self, partition: int, webhook_id: str) -> Outcome:
        """A record that does not decode (or names another id): it loses, and is
        repaired unless the id lives in another partition."""
        current = self._current.get(webhook_id)
        if current is not None and current.partition != partition:
            return Outcome("ignored", "unreadable, outside the webhook's partition")
        outcome = Outcome("ignored", "unreadable", repair=True)
        self._note_repair(partition, webhook_id, outcome)
        return outcome

    def take_repairs(self) -> list[Repair]:
        """What to append so that no record that lost stays last for its key:
        the current record again where it lives, else a tombstone. Forgotten
        once taken (`owe_repairs` gives back those not written)."""
        taken, self._repairs = self._repairs, {}
        repairs = []
        for webhook_id, partition in taken:
            current = self._current.get(webhook_id)
            if current is None:
                repairs.append(Repair(webhook_id, partition, tombstone=True))
            elif current.partition == partition:
                repairs.append(Repair(webhook_id, partition, tombstone=False))
            elif not self._counts(webhook_id, partition):
                # It lives elsewhere now, and this is not its home partition: a
                # tombstone here binds no reader, and ends what is left here (else
                # a fresh reader takes it for the webhook once the home one's
                # tombstone is cleaned away).
                repairs.append(Repair(webhook_id, partition, tombstone=True))
            # else: it lives elsewhere now; a tombstone here could delete it
        return repairs

    def owe_repairs(self, repairs: list[Repair]) -> None:
        for repair in repairs:
            self._repairs[repair.webhook_id, repair.partition] = None

    def _at_home(self, webhook_id: str, partition: int) -> bool:
        return self._home is not None and self._home(webhook_id) == partition

    def _tombstone(self, partition: int, webhook_id: str) -> Outcome:
        current = self._current.get(webhook_id)
        if (current is not None and current.partition != partition
                and not self._at_home(webhook_id, partition)):
            self._repairs.pop((webhook_id, partition), None)  # it is the repair there
            return Outcome("ignored", f"tombstone outside the webhook's partition "
                                      f"{current.partition}")
        if webhook_id in self._deleted:
            self._deleted.move_to_end(webhook_id)
            at_home = self._at_home(webhook_id, partition)
            if at_home:
                self._deleted[webhook_id] = partition
            shadow = self._shadows.get(webhook_id)
            if shadow is not None and (shadow.partition == partition or at_home):
                # A reader that never saw the first tombstone deletes it here.
                del self._shadows[webhook_id]
                self._count(webhook_id, shadow.partition, shadow.app_id, -1, self._shadow_live)
            return _UNCHANGED
        if current is not None:
            del self._current[webhook_id]
            self._count(webhook_id, current.partition, current.app_id, -1)
            if current.partition != partition:  # a foreign record, ended at home: its
                self._repairs[webhook_id, current.partition] = None  # own stays last there
        self._deleted[webhook_id] = partition
        if len(self._deleted) > self._deleted_capacity:
            forgotten, _ = self._deleted.popitem(last=False)
            shadow = self._shadows.pop(forgotten, None)
            if shadow is not None:  # forgotten: held as a reader without the tombstone holds it
                self._count(forgotten, shadow.partition, shadow.app_id, -1, self._shadow_live)
                self._current[forgotten] = shadow
                self._count(forgotten, shadow.partition, shadow.app_id, +1)
        return Outcome("deleted")

    def _written(self, partition: int, webhook_id: str, record: Written) -> Outcome:
        deleted_in = self._deleted.get(webhook_id)
        if deleted_in is not None:
            self._deleted.move_to_end(webhook_id)
            if deleted_in == partition:
                self._shadow(partition, webhook_id, record)
                return Outcome("ignored", "the webhook was deleted", repair=True)
            if not self._at_home(webhook_id, partition):
                return Outcome("ignored", "the webhook was deleted", repair=True)
            # A tombstone outside the id's home partition does not bind it.
            del self._deleted[webhook_id]
            outcome = self._created(partition, webhook_id, record)
            if not outcome.holds:
                self._deleted[webhook_id] = deleted_in
            else:
                shadow = self._shadows.pop(webhook_id, None)
                if shadow is not None:  # replaced, as the foreign record it is for others
                    self._count(webhook_id, shadow.partition, shadow.app_id, -1, self._shadow_live)
            return outcome
        current = self._current.get(webhook_id)
        if current is None:
            return self._created(partition, webhook_id, record)
        if current.partition != partition:
            if not self._at_home(webhook_id, partition):
                # Repaired (a tombstone here) when the id's home is known: else it
                # stays last here, and a fresh reader takes it for the webhook once
                # the home record's tombstone is cleaned away.
                return Outcome("ignored", f"outside the webhook's partition {current.partition}",
                               repair=not self._counts(webhook_id, partition))
            # The home partition's record, judged as if the foreign one were absent.
            del self._current[webhook_id]
            self._count(webhook_id, current.partition, current.app_id, -1)
            outcome = self._created(partition, webhook_id, record)
            if not outcome.holds:
                self._current[webhook_id] = current
                self._count(webhook_id, current.partition, current.app_id, +1)
            else:  # the foreign record stays last in its partition: end it there
                self._repairs[webhook_id, current.partition] = None
            return outcome
        if record.app_id != current.app_id:
            return Outcome("ignored", "names another app", repair=True)
        if record.version == current.version and record.digest == current.digest:
            return _UNCHANGED
        if (record.version > current.version
                or record.version == current.version == 0):
            self._current[webhook_id] = Current(record.version, record.app_id, partition,
                                                record.digest)
            return Outcome("updated")
        return Outcome("ignored", f"stale: version {record.version} over {current.version}",
                       repair=True)

    def _shadow(self, partition: int, webhook_id: str, record: Written) -> None:
        """A record for an id deleted in this partition: judge it as a reader
        that never saw the tombstone would (the id unknown, or holding what the
        records since the tombstone made of it), and keep the result counted
        against the app's limit until a tombstone here follows. The record still
        loses: it is ignored, and repaired with a tombstone."""
        deleted_in = self._deleted.pop(webhook_id)
        shadow = self._shadows.pop(webhook_id, None)
        if shadow is not None:  # judged by the same code, as if it were current
            self._count(webhook_id, shadow.partition, shadow.app_id, -1, self._shadow_live)
            self._current[webhook_id] = shadow
            self._count(webhook_id, shadow.partition, shadow.app_id, +1)
        try:
            self._written(partition, webhook_id, record)
        finally:
            shadow = self._current.pop(webhook_id, None)
            if shadow is not None:
                self._count(webhook_id, shadow.partition, shadow.app_id, -1)
                self._shadows[webhook_id] = shadow
                self._count(webhook_id, shadow.partition, shadow.app_id, +1, self._shadow_live)
            self._deleted[webhook_id] = deleted_in

    def _created(self, partition: int, webhook_id: str, record: Written) -> Outcome:
        key = (partition, record.app_id)
        if (record.version <= 1 and record.app_limit > 0 and not record.is_repair
                and self._counts(webhook_id, partition)
                and self._live[key] + self._shadow_live[key] >= record.app_limit):
            return Outcome("ignored", f"app {record.app_id} has {record.app_limit} webhooks, "
                                      "the most allowed", repair=True)
        self._current[webhook_id] = Current(record.version, record.app_id, partition,
                                            record.digest)
        self._count(webhook_id, partition, record.app_id, +1)
        return Outcome("created")

    def _counts(self, webhook_id: str, partition: int) -> bool:
        """Whether a record of `webhook_id` in `partition` is judged against, and
        counts against, its app's limit: not outside its home partition (a
        hostile or broken producer's record there ends when the id's home
        records are read, which readers do at different points)."""
        return self._home is None or self._home(webhook_id) in (None, partition)

    def _count(self, webhook_id: str, partition: int, app_id: str, change: int,
               counter: Counter[tuple[int, str]] | None = None) -> None:
        if not self._counts(webhook_id, partition):
            return
        counter = self._live if counter is None else counter
        key = (partition, app_id)
        counter[key] += change
        if counter[key] <= 0:
            del counter[key]

    def _note_repair(self, partition: int, webhook_id: str, outcome: Outcome) -> None:
        """Track whether the last record of `webhook_id` in its partition lost."""
        if outcome.repair:
            self._repairs[webhook_id, partition] = None
        elif outcome.kind != "ignored":
            self._repairs.pop((webhook_id, partition), None)
