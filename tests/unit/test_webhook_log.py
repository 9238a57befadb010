"""The rules that decide which webhook record wins (services/common/webhook_log.py):
each rule in a table, then properties over random logs written by writers with
stale views: readers that interleave partitions differently agree, a stale write
never wins, the per-app limit holds, and compaction changes no conclusion."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.webhooks import Webhook, webhook_decoder
from services.common.webhook_log import Outcome, WebhookLog, Written, digest_of

# A record as ingest wrote it before versions existed (golden: never edit).
LEGACY_RECORD = (
    b'{"id":"wh_01HZX3","app_id":"app_1","target":"https://example.com/hook",'
    b'"triggers":["message"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",'
    b'"created_at":"2026-11-22T18:15:00.123Z","updated_at":"2026-11-22T18:15:00.123Z",'
    b'"description":"crm","enabled":false,"disabled_reason":"endpoint answered 410"}'
)


def test_a_record_written_before_versions_decodes_as_version_0() -> None:
    webhook = webhook_decoder.decode(LEGACY_RECORD)
    assert (webhook.version, webhook.app_limit) == (0, 0)
    assert (webhook.id, webhook.enabled, webhook.description) == ("wh_01HZX3", False, "crm")


def test_a_versioned_record_round_trips_and_older_readers_skip_the_new_fields() -> None:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    webhook = Webhook(id="wh_1", app_id="app_1", target="https://e.com", triggers=["*"],
                      secret="s", created_at=at, updated_at=at, version=3, app_limit=10)
    encoded = msgspec.json.encode(webhook)
    assert webhook_decoder.decode(encoded) == webhook

    class OldWebhook(msgspec.Struct, kw_only=True):  # the fields before versions
        id: str
        app_id: str
        target: str
        triggers: list[str]
        secret: str
        created_at: datetime
        updated_at: datetime

    assert msgspec.json.decode(encoded, type=OldWebhook).id == "wh_1"
    assert b'"version"' not in msgspec.json.encode(replace_version(webhook, 0))


def replace_version(webhook: Webhook, version: int) -> Webhook:
    return msgspec.structs.replace(webhook, version=version, app_limit=0)


def rec(version: int, app: str = "a", limit: int = 0, content: str = "",
        repair: bool = False) -> Written:
    return Written(version, app, limit, digest_of(f"{version}/{app}/{content}".encode()),
                   is_repair=repair)


# (records of one id as (partition, record or None for a tombstone), expected kinds)
RULES = [
    pytest.param([(0, rec(1))], ["created"], id="create"),
    pytest.param([(0, rec(1)), (0, rec(2))], ["created", "updated"], id="next version"),
    pytest.param([(0, rec(1)), (0, rec(1))], ["created", "unchanged"], id="same record again"),
    pytest.param([(0, rec(1)), (0, rec(1, content="x"))], ["created", "ignored"],
                 id="same version, other content"),
    pytest.param([(0, rec(1)), (0, rec(2)), (0, rec(2, content="x"))],
                 ["created", "updated", "ignored"], id="stale: two writes of one version"),
    pytest.param([(0, rec(1)), (0, rec(3)), (0, rec(2))], ["created", "updated", "ignored"],
                 id="older version"),
    pytest.param([(0, rec(1)), (0, rec(4))], ["created", "updated"],
                 id="later version: history compacted"),
    pytest.param([(0, rec(5))], ["created"], id="first seen above 1: history compacted"),
    pytest.param([(0, rec(0)), (0, rec(0, content="x"))], ["created", "updated"],
                 id="legacy over legacy: last writer wins"),
    pytest.param([(0, rec(0)), (0, rec(1))], ["created", "updated"],
                 id="first version over legacy"),
    pytest.param([(0, rec(2)), (0, rec(0))], ["created", "ignored"], id="legacy over versioned"),
    pytest.param([(0, rec(1)), (0, None)], ["created", "deleted"], id="delete"),
    pytest.param([(0, rec(1)), (0, None), (0, rec(2))], ["created", "deleted", "ignored"],
                 id="a delete is final"),
    pytest.param([(0, rec(1)), (0, None), (0, rec(1))], ["created", "deleted", "ignored"],
                 id="no re-create after a delete"),
    pytest.param([(0, rec(1)), (0, None), (0, None)], ["created", "deleted", "unchanged"],
                 id="delete twice"),
    pytest.param([(0, None)], ["deleted"], id="tombstone first: its create was compacted"),
    pytest.param([(0, rec(1)), (1, rec(2))], ["created", "ignored"],
                 id="outside its partition"),
    pytest.param([(0, rec(1)), (1, None)], ["created", "ignored"],
                 id="tombstone outside its partition"),
    pytest.param([(0, rec(1)), (0, rec(2, app="b"))], ["created", "ignored"],
                 id="names another app"),
]


@pytest.mark.parametrize(("records", "kinds"), RULES)
def test_rule(records: list[tuple[int, Written | None]], kinds: list[str]) -> None:
    log = WebhookLog()
    assert [log.apply(p, "wh", r).kind for p, r in records] == kinds


def test_creates_count_against_the_limit_per_app_and_partition() -> None:
    log = WebhookLog()
    assert [log.apply(0, f"a{n}", rec(1, "a", limit=2)).kind for n in range(3)] == \
        ["created", "created", "ignored"]
    assert log.apply(0, "b0", rec(1, "b", limit=2)).kind == "created"  # another app
    assert log.apply(1, "a3", rec(1, "a", limit=2)).kind == "created"  # another partition
    assert log.apply(0, "a4", rec(1, "a", limit=0)).kind == "created"  # unchecked
    assert log.apply(0, "a0", None).kind == "deleted"
    assert log.apply(0, "a5", rec(1, "a", limit=3)).kind == "created"
    assert log.live(0, "a") == 3
    # A repair or a later version is a survivor of compaction, not a new webhook.
    assert log.apply(0, "a6", rec(1, "a", limit=2, repair=True)).kind == "created"
    assert log.apply(0, "a7", rec(2, "a", limit=2)).kind == "created"


def test_each_losing_record_is_repaired_once_and_only_while_it_is_the_last() -> None:
    log = WebhookLog()
    log.apply(0, "wh", rec(1))
    log.apply(0, "wh", rec(2))
    assert log.apply(0, "wh", rec(2, content="stale")).repair
    log.apply(0, "gone", rec(1))
    log.apply(0, "gone", None)
    log.apply(0, "gone", rec(2))
    log.apply(1, "lost", rec(1, limit=1))
    log.apply(1, "over", rec(1, limit=1))
    log.apply(0, "fixed", rec(1))
    log.apply(0, "fixed", rec(1, content="stale"))
    log.apply(0, "fixed", rec(2))  # a later write won: nothing to repair
    repairs = {r.webhook_id: (r.partition, r.tombstone) for r in log.take_repairs()}
    assert repairs == {"wh": (0, False), "gone": (0, True), "over": (1, True)}
    assert log.take_repairs() == []


def test_unreadable_records_lose_and_are_repaired_where_the_id_lives() -> None:
    log = WebhookLog()
    log.apply(0, "wh", rec(1))
    assert log.apply_unreadable(0, "wh") == Outcome("ignored", "unreadable", repair=True)
    assert not log.apply_unreadable(1, "wh").repair
    assert log.apply_unreadable(2, "junk").repair
    repairs = {r.webhook_id: (r.partition, r.tombstone) for r in log.take_repairs()}
    assert repairs == {"wh": (0, False), "junk": (2, True)}
    assert log.current("wh") is not None and log.current("wh").version == 1


def test_deleted_ids_are_remembered_up_to_the_capacity() -> None:
    log = WebhookLog(deleted_capacity=2)
    for webhook_id in ("a", "b", "c"):
        log.apply(0, webhook_id, None)
    assert [log.is_deleted(i) for i in "abc"] == [False, True, True]



def test_a_stale_write_after_a_dropped_tombstone_judges_no_create_differently() -> None:
    """The minimal counterexample found by test_compaction_changes_no_conclusion.
    wh0 is created and deleted; a writer whose view still held wh0 v1 appends v2,
    which loses (deleted) and is repaired with a tombstone, and wh6 is created in
    between, under a limit of 1. The cleaner drops the first tombstone (delete.
    retention.ms after cleaning it) while the rest still sits uncleaned (the active
    segment of a quiet partition), so a fresh reader takes v2 for a survivor of
    compaction and counts it: wh6 had to be judged with it counted by every reader,
    else the fresh reader rejects it and a restarted ingest deletes it."""
    created, stale, wh6, repair = (rec(1, limit=1), rec(2, limit=1, content="stale"),
                                   rec(1, limit=1, content="wh6"), None)
    full = [(0, "wh0", created), (0, "wh0", None), (0, "wh0", stale), (0, "wh6", wh6),
            (0, "wh0", repair)]
    compacted = full[2:]  # cleaned after the delete, the tombstone dropped
    truth, fresh = WebhookLog(), WebhookLog()
    assert [truth.apply(*r).kind for r in full] == \
        ["created", "deleted", "ignored", "ignored", "unchanged"]
    assert [fresh.apply(*r).kind for r in compacted] == ["created", "ignored", "deleted"]
    for log in (truth, fresh):
        assert (log.current("wh0"), log.current("wh6"), log.live(0, "a")) == (None, None, 0)
        assert {r.webhook_id: r.tombstone for r in log.take_repairs()} == {"wh6": True}
        # The repair of the stale write frees the count: the next create holds.
        assert log.apply(0, "wh7", rec(1, limit=1, content="wh7")).kind == "created"


def test_a_deleted_ids_records_count_only_in_its_partition_until_a_tombstone_there() -> None:
    log = WebhookLog()
    log.apply(0, "wh", rec(1))
    log.apply(0, "wh", None)
    assert log.apply(1, "wh", rec(2)).kind == "ignored"  # elsewhere: no count
    assert log.apply(0, "x", rec(1, limit=1)).kind == "created"
    log.apply(0, "x", None)
    assert log.apply(0, "wh", rec(2)).kind == "ignored"  # counts in partition 0
    assert log.apply(1, "wh", None).kind == "unchanged"  # not its partition
    assert log.apply(0, "y", rec(1, limit=1)).kind == "ignored"
    assert log.apply(0, "wh", None).kind == "unchanged"
    assert log.apply(0, "z", rec(1, limit=1)).kind == "created"
    assert (log.live(0, "a"), log.is_deleted("wh"), log.current("wh")) == (1, True, None)


# ---- properties over random histories ---------------------------------------------

PARTITIONS = 2
LIMIT = 2
APP_PARTITION = {"a": 0, "b": 1, "c": 0}  # where ingest places each app's new webhooks
LEGACY_APP = "old"  # webhooks created before versions (placed by id, unchecked)


@dataclass(frozen=True)
class Record:
    partition: int
    key: str
    written: Written | None  # None: a tombstone
    base: int | None = None  # an update's version it was based on
    legacy: bool = False
    unreadable: bool = False


def feed(log: WebhookLog, record: Record) -> Outcome:
    if record.unreadable:
        return log.apply_unreadable(record.partition, record.key)
    return log.apply(record.partition, record.key, record.written)


def replay(records: list[Record]) -> WebhookLog:
    log = WebhookLog()
    for record in records:
        feed(log, record)
    return log


def state(log: WebhookLog, keys: set[str]) -> tuple[dict, set]:
    return ({k: log.current(k) for k in keys if log.current(k) is not None},
            {k for k in keys if log.is_deleted(k)})


class History:
    """A log written by writers whose views lag by `lag` records, read in append
    order by `truth`; ingest's repairs are appended when `repair` steps say."""

    def __init__(self) -> None:
        self.log: list[Record] = []
        self.truth = WebhookLog()
        self.values: dict[str, Written] = {}  # current record of each id, per truth
        self.outcomes: list[tuple[Record, Outcome, int | None]] = []  # and version before
        self.clean_points = [0]  # lengths at which no losing record awaited its repair
        self.ids: list[str] = []
        self.limits: dict[str, int] = {}  # the app_limit each id was created with
        self.nonce = 0

    def append(self, record: Record) -> None:
        before = self.truth.current(record.key)
        outcome = feed(self.truth, record)
        self.outcomes.append((record, outcome, None if before is None else before.version))
        if outcome.kind in ("created", "updated") and record.written is not None:
            self.values[record.key] = record.written
        self.log.append(record)

    def view(self, lag: int) -> WebhookLog:
        return replay(self.log[:max(0, len(self.log) - lag)])

    def content(self, version: int, app: str, limit: int) -> Written:
        self.nonce += 1
        return Written(version, app, limit, digest_of(f"{self.nonce}".encode()))

    def create(self, app: str) -> None:
        key = f"wh{len(self.ids)}"
        self.ids.append(key)
        self.limits[key] = LIMIT
        self.append(Record(APP_PARTITION[app], key, self.content(1, app, LIMIT)))

    def create_legacy(self) -> None:
        key = f"wh{len(self.ids)}"
        self.ids.append(key)
        self.limits[key] = 0
        self.append(Record(len(self.ids) % PARTITIONS, key, self.content(0, LEGACY_APP, 0),
                           legacy=True))

    def update(self, pick: int, lag: int, legacy: bool) -> None:
        if not self.ids:
            return
        key = self.ids[pick % len(self.ids)]
        seen = self.view(lag).current(key)
        if seen is None:
            return  # the writer's view has no such webhook: a 404
        version = 0 if legacy else seen.version + 1
        # As ingest and the deliverer do: the app_limit stays the one of the create.
        written = self.content(version, seen.app_id, 0 if legacy else self.limits[key])
        self.append(Record(seen.partition, key, written,
                           base=None if legacy else seen.version, legacy=legacy))

    def delete(self, pick: int, lag: int) -> None:
        if self.ids:
            key = self.ids[pick % len(self.ids)]
            seen = self.view(lag).current(key)
            if seen is not None:
                self.append(Record(seen.partition, key, None))

    def garbage(self, pick: int, partition: int) -> None:
        key = self.ids[pick % len(self.ids)] if self.ids and pick % 3 else "junk"
        self.append(Record(partition, key, None, unreadable=True))

    def repair(self) -> None:
        for repair in self.truth.take_repairs():
            written = None if repair.tombstone else replace(self.values[repair.webhook_id],
                                                            is_repair=True)
            self.append(Record(repair.partition, repair.webhook_id, written))
        self.clean_points.append(len(self.log))


_CREATE = st.tuples(st.just("create"), st.sampled_from(sorted(APP_PARTITION)))
_UPDATE = st.tuples(st.just("update"), st.integers(0, 20), st.integers(0, 6), st.booleans())
STEPS = st.one_of(  # creates and updates weigh more: they make the races
    _CREATE, _CREATE, _CREATE,
    st.tuples(st.just("legacy"), st.just(0)),
    _UPDATE, _UPDATE, _UPDATE, _UPDATE,
    st.tuples(st.just("delete"), st.integers(0, 20), st.integers(0, 6)),
    st.tuples(st.just("garbage"), st.integers(0, 20), st.integers(0, PARTITIONS - 1)),
    st.tuples(st.just("repair")),
)


def write(steps: list[tuple]) -> History:
    history = History()
    for step in steps:
        match step:
            case ("create", app):
                history.create(app)
            case ("legacy", _):
                history.create_legacy()
            case ("update", pick, lag, legacy):
                history.update(pick, lag, legacy and pick % 4 == 0)
            case ("delete", pick, lag):
                history.delete(pick, lag)
            case ("garbage", pick, partition):
                history.garbage(pick, partition)
            case ("repair",):
                history.repair()
    history.repair()
    return history


@st.composite
def interleavings(draw: st.DrawFn, records: list[Record]) -> list[Record]:
    """`records` as another reader might read them: each partition in order, the
    partitions interleaved at random."""
    queues = [[r for r in records if r.partition == p] for p in range(PARTITIONS)]
    read: list[Record] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        read.append(queue.pop(0))
    return read


def compact(records: list[Record], cut: int, drop_tombstones: bool) -> list[Record]:
    """What Kafka's cleaner leaves after cleaning the first `cut` records: the
    last record of each key (tombstones too, unless past their retention)."""
    last = {(r.partition, r.key): n for n, r in enumerate(records[:cut])}
    kept = [r for n, r in enumerate(records[:cut]) if last[r.partition, r.key] == n
            and not (drop_tombstones and r.written is None and not r.unreadable)]
    return kept + records[cut:]


HISTORIES = st.lists(STEPS, min_size=20, max_size=80).map(write)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), history=HISTORIES)
def test_readers_that_interleave_partitions_differently_agree(
    data: st.DataObject, history: History
) -> None:
    other = replay(data.draw(interleavings(history.log)))
    keys = {r.key for r in history.log}
    assert state(other, keys) == state(history.truth, keys)


@settings(max_examples=300, deadline=None)
@given(history=HISTORIES)
def test_a_stale_write_never_wins(history: History) -> None:
    for record, outcome, before in history.outcomes:
        if record.base is not None and outcome.kind == "updated":
            assert record.base == before, (record, outcome)
        if record.base is not None and before is not None and record.base < before:
            assert outcome.kind == "ignored"


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEPS, min_size=20, max_size=80), data=st.data())
def test_the_limit_holds_in_every_partition_at_every_point(
    steps: list[tuple], data: st.DataObject
) -> None:
    history = write(steps)
    for log in (history.truth, replay(data.draw(interleavings(history.log)))):
        for partition in range(PARTITIONS):
            for app in APP_PARTITION:
                assert log.live(partition, app) <= LIMIT
    running = WebhookLog()
    for record in history.log:
        feed(running, record)
        assert all(running.live(p, a) <= LIMIT for p in range(PARTITIONS) for a in APP_PARTITION)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), history=HISTORIES, drop_tombstones=st.booleans())
def test_compaction_changes_no_conclusion(
    data: st.DataObject, history: History, drop_tombstones: bool
) -> None:
    """Cleaned up to any point where no losing record awaits its repair (min.
    compaction.lag.ms gives ingest that time), the log reads the same in the end."""
    cut = data.draw(st.sampled_from(history.clean_points))
    compacted = compact(history.log, cut, drop_tombstones)
    fresh = replay(data.draw(interleavings(compacted)))
    keys = {r.key for r in history.log}
    current, deleted = state(history.truth, keys)
    fresh_current, fresh_deleted = state(fresh, keys)
    assert fresh_current == current
    if not drop_tombstones:
        assert fresh_deleted == deleted
    for repair in fresh.take_repairs():  # what a restarted ingest would append: harmless
        if repair.tombstone:
            assert repair.webhook_id not in current
        else:
            assert fresh.current(repair.webhook_id) == current[repair.webhook_id]
