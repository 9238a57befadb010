"""What the router plans for one `events` record, the dead letter it writes
when it cannot route it, and the order in which it acknowledges events."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace

import msgspec
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.deliveries import DeliveryTask
from schemas.eventlog import Routed as RoutedUpdate
from schemas.eventlog import update_decoder
from schemas.events import EventDeadLetter
from services.router.in_order_acks import InOrderAcks
from services.router.matching import SubscriptionIndex
from services.router.planning import (
    MAX_DATA_DEPTH,
    Limits,
    Routed,
    Unroutable,
    after_refusal_as_too_large,
    dead_letter,
    nesting_depth,
    plan,
    record_bytes,
    refusal_may_dead_letter,
    task_key,
)


def index() -> SubscriptionIndex:
    idx = SubscriptionIndex()
    idx.put("wh_msg", "app_1", ["message"])
    idx.put("wh_all", "app_1", ["*"])
    idx.put("wh_other_app", "app_2", ["*"])
    return idx


def routed(value: bytes, offset: int = 7, limits: Limits = Limits()) -> Routed:
    outcome = plan(value, partition=1, offset=offset, timestamp_ms=1_795_000_000_000,
                   index=index(), limits=limits)
    assert isinstance(outcome, Routed), outcome
    return outcome


def event(data: bytes = b"{}", type_: str = "message.sent") -> bytes:
    return b'{"type": "%s", "app_id": "app_1", "data": %s}' % (type_.encode(), data)


def nested(depth: int) -> bytes:
    """`data` nested `depth` levels deep: an object holding arrays."""
    return b'{"deep": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_one_task_per_matching_webhook_carrying_the_envelope() -> None:
    outcome = routed(b'{"id": "evt_1", "type": "message.sent", "app_id": "app_1",'
                     b' "created_at": "2026-11-22T18:15:00.123Z", "data": {"a": 1}}')
    assert [webhook_id for webhook_id, _ in outcome.tasks] == ["wh_all", "wh_msg"]
    task = msgspec.json.decode(outcome.tasks[0][1], type=DeliveryTask)
    assert task.event_id == "evt_1" and task.attempt == 1
    assert msgspec.json.decode(task.body) == {
        "id": "evt_1", "type": "message.sent", "app_id": "app_1",
        "created_at": "2026-11-22T18:15:00.123000Z", "data": {"a": 1},
    }


def test_records_written_straight_to_kafka_get_a_stable_id_and_time() -> None:
    raw = b'{"type": "payment.succeeded", "app_id": "app_1"}'
    first, again, other = routed(raw), routed(raw), routed(raw, offset=8)
    assert first.event.id.startswith("evt_")
    assert first.event.id == again.event.id != other.event.id
    assert first.event.created_at.timestamp() == 1_795_000_000
    assert [w for w, _ in first.tasks] == ["wh_all"]


def test_unmatched_events_plan_nothing() -> None:
    assert routed(b'{"type": "contact.created", "app_id": "app_9"}').tasks == []


@pytest.mark.parametrize(("value", "webhook_ids"), [
    (b'{"id": "evt_1", "type": "message.sent", "app_id": "app_1",'
     b' "created_at": "2026-11-22T18:15:00Z"}', ["wh_all", "wh_msg"]),
    (b'{"id": "evt_1", "type": "contact.created", "app_id": "app_1",'
     b' "created_at": "2026-11-22T18:15:00Z"}', ["wh_all"]),
    # Unmatched events are listed by the event log too.
    (b'{"id": "evt_1", "type": "message.sent", "app_id": "app_9",'
     b' "created_at": "2026-11-22T18:15:00Z"}', []),
])
def test_every_routed_event_tells_the_event_log_where_it_is_and_what_it_matched(
    value: bytes, webhook_ids: list[str]
) -> None:
    outcome = routed(value, offset=41)
    app_id = outcome.event.app_id
    assert outcome.update_key == app_id.encode()  # the log's partition of the app files it
    assert update_decoder.decode(outcome.update) == RoutedUpdate(
        app_id=app_id, event_id="evt_1", event_type=outcome.event.type,
        created_at=datetime(2026, 11, 22, 18, 15, tzinfo=UTC), source="events",
        partition=1, offset=41, webhook_ids=webhook_ids)
    assert [w for w, _ in outcome.tasks] == webhook_ids


def test_the_routed_record_carries_the_final_id_and_time_of_a_record_without_them() -> None:
    raw = b'{"type": "payment.succeeded", "app_id": "app_1"}'
    outcome = routed(raw)
    update = update_decoder.decode(outcome.update)
    assert isinstance(update, RoutedUpdate)
    assert (update.event_id, update.created_at) == (outcome.event.id, outcome.event.created_at)
    assert update_decoder.decode(routed(raw).update) == update  # the same after a crash
    task = msgspec.json.decode(outcome.tasks[0][1], type=DeliveryTask)
    assert (task.event_id, task.event_created_at) == (update.event_id, update.created_at)


@pytest.mark.parametrize(("value", "timestamp_ms", "reason"), [
    (None, 0, "null value (tombstone)"),
    (b"", 0, "not an event envelope"),
    (b"not json", 0, "not an event envelope"),
    (b"\xff\xfe", 0, "not an event envelope"),
    (b"[1, 2]", 0, "not an event envelope"),
    (b'{"app_id": "app_1"}', 0, "not an event envelope"),
    (b'{"type": "nope", "app_id": "app_1"}', 0, "unknown event type"),
    (b'{"type": "webhook.test", "app_id": "app_1"}', 0, "may not be published"),
    (b'{"type": "message.sent", "app_id": "app_1", "data": 3}', 0, "not an event envelope"),
    (b'{"type": "message.sent", "app_id": 5}', 0, "not an event envelope"),
    # Signed as "{id}.{timestamp}.{body}": an id with a "." would split two ways.
    (b'{"id": "evt_1.1900000000", "type": "message.sent", "app_id": "app_1"}', 0,
     "may not hold '.'"),
    # A record may nest so deep that decoding it exhausts the recursion limit...
    (event(nested(3000)), 0, "nested too deeply to decode (recursion"),
    (event(nested(100_000)), 0, "nested too deeply to decode (recursion"),
    # ... or decode and still be deeper than what is routed.
    (event(nested(MAX_DATA_DEPTH + 1)), 0, f"nested {MAX_DATA_DEPTH + 1} levels deep"),
    # Any other failure while planning is this record's too: here, a record
    # without created_at whose Kafka timestamp is out of datetime's range.
    (event(), 10**18, "could not be planned: ValueError"),
])
def test_unroutable_records_and_their_reasons(value: bytes | None, timestamp_ms: int,
                                              reason: str) -> None:
    outcome = plan(value, partition=0, offset=0, timestamp_ms=timestamp_ms, index=index())
    assert isinstance(outcome, Unroutable) and reason in outcome.reason, outcome


def test_data_as_deep_as_allowed_is_routed() -> None:
    outcome = routed(event(nested(MAX_DATA_DEPTH)))
    assert nesting_depth(outcome.event.data) == MAX_DATA_DEPTH
    assert len(outcome.tasks) == 2


def test_a_task_too_large_for_deliveries_dead_letters_its_event() -> None:
    value = event(b'{"text": "%s"}' % (b"x" * 50_000))
    fits = max(record_bytes(task_key(w), t) for w, t in routed(value).tasks)
    assert len(routed(value, limits=Limits(deliveries=fits)).tasks) == 2
    outcome = plan(value, partition=0, offset=0, timestamp_ms=0, index=index(),
                   limits=Limits(deliveries=fits - 1))
    assert isinstance(outcome, Unroutable)
    assert outcome.reason == (f"delivery task too large: {fits} bytes, over the {fits - 1} bytes"
                              " the deliveries topic takes (its max.message.bytes, or the"
                              " producer's max request size)")


@pytest.mark.parametrize(("text_bytes", "dead_lettered"), [(100, False), (15_000, False),
                                                             (17_000, True), (500_000, True)])
def test_a_refused_task_dead_letters_its_event_only_if_it_was_alone_in_its_batch(
    text_bytes: int, dead_lettered: bool
) -> None:
    tasks = routed(event(b'{"text": "%s"}' % (b"x" * text_bytes))).tasks
    outcome = after_refusal_as_too_large(tasks, producer_batch_size=16_384)
    # Exactly then the Routed record waits for the tasks: a dead-lettered
    # event has none.
    assert refusal_may_dead_letter(tasks, producer_batch_size=16_384) is dead_lettered
    if not dead_lettered:
        assert outcome is None  # unknown: the router stops
    else:
        assert isinstance(outcome, Unroutable)
        size = max(record_bytes(task_key(w), t) for w, t in tasks)
        assert outcome.reason.startswith(f"delivery task too large: the broker refused a task"
                                         f" of {size} bytes (MessageSizeTooLargeError")


def test_limits_are_the_smaller_of_topic_and_producer() -> None:
    limits = Limits.of_topics(deliveries_max_message_bytes=2_000_000,
                              dead_letters_max_message_bytes=20_000, max_request_size=1_000_000)
    assert limits == Limits(deliveries=1_000_000, dead_letters=20_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=30,
)


def naive_depth(node: object) -> int:
    if isinstance(node, dict):
        return 1 + max(map(naive_depth, node.values()), default=0)
    if isinstance(node, list):
        return 1 + max(map(naive_depth, node), default=0)
    return 0


@given(json_values)
def test_nesting_depth_agrees_with_a_recursive_count(data: object) -> None:
    assert nesting_depth(data) == naive_depth(data)


records = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(
        lambda t, app, data, depth: msgspec.json.encode(
            {"type": t, "app_id": app, "data": {"d": data, "deep": nested_list(depth)}}),
        st.sampled_from(["message.sent", "contact.created", "webhook.test", "nope"]),
        st.sampled_from(["app_1", "app_2", "app_3"]),
        json_values,
        st.integers(0, 2 * MAX_DATA_DEPTH),
    ),
)


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=300, deadline=None)
@given(records, st.integers(0, 2**31), st.integers(500, 5_000))
def test_plan_never_raises_and_every_task_fits(value: bytes | None, offset: int,
                                               limit: int) -> None:
    outcome = plan(value, partition=0, offset=offset, timestamp_ms=1_795_000_000_000,
                   index=index(), limits=Limits(deliveries=limit))
    assert isinstance(outcome, Routed | Unroutable)
    if isinstance(outcome, Routed):
        assert all(record_bytes(task_key(w), t) <= limit for w, t in outcome.tasks)
        assert nesting_depth(outcome.event.data) <= MAX_DATA_DEPTH
        update = update_decoder.decode(outcome.update)
        assert isinstance(update, RoutedUpdate) and update.offset == offset
        assert update.webhook_ids == [w for w, _ in outcome.tasks]
        assert outcome.update_key == update.app_id.encode()
    else:
        assert outcome.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3_000), st.binary(min_size=0, max_size=40) | st.none())
def test_record_bytes_bounds_a_one_record_batch(value: bytes, key: bytes | None) -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=16_384)
    assert builder.append(0, 1_795_000_000_000, key, value, []) is not None
    assert len(builder.build()) <= record_bytes(key, value)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) <= \
        record_bytes(key, value)


NOW = datetime(2026, 11, 22, 18, 15, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=30_000) | st.none(), st.integers(2_000, 40_000),
       st.text(min_size=1, max_size=3_000))
def test_a_dead_letter_fits_its_topic(value: bytes | None, limit: int, reason: str) -> None:
    key = b"app_1"
    encoded = dead_letter(reason=reason, topic="t.events", partition=2, offset=9, key=key,
                          value=value, failed_at=NOW, limit=limit)
    assert record_bytes(key, encoded) <= limit
    letter = msgspec.json.decode(encoded, type=EventDeadLetter)
    assert (letter.topic, letter.partition, letter.offset) == ("t.events", 2, 9)
    assert letter.value_size == len(value or b"")
    assert (value or b"").startswith(letter.value)
    assert letter.value_truncated == (letter.value != (value or b""))
    assert letter.reason and reason.startswith(letter.reason.removesuffix("…"))


def test_a_dead_letter_keeps_the_whole_value_when_it_fits() -> None:
    letter = msgspec.json.decode(
        dead_letter(reason="r", topic="e", partition=0, offset=1, key=None, value=b"abc",
                    failed_at=NOW, limit=1_000_000), type=EventDeadLetter)
    assert (letter.value, letter.value_size, letter.value_truncated) == (b"abc", 3, False)


def test_old_dead_letters_still_decode() -> None:
    old = (b'{"reason": "r", "topic": "e", "partition": 0, "offset": 1, "value": "YWJj",'
           b' "failed_at": "2026-11-22T18:15:00Z"}')
    letter = msgspec.json.decode(old, type=EventDeadLetter)
    assert (letter.value, letter.value_size, letter.value_truncated) == (b"abc", None, False)


# In-order acknowledgement -------------------------------------------------

def test_an_event_is_acknowledged_only_after_every_earlier_one() -> None:
    acks: InOrderAcks[str] = InOrderAcks()
    for offset in (10, 11, 12):
        acks.taken("p", offset, f"e{offset}")
    assert acks.finished("p", 11) == []
    assert acks.finished("p", 12) == []
    assert acks.finished("p", 10) == ["e10", "e11", "e12"]
    assert acks.pending("p") == 0


def test_partitions_are_independent_and_forgotten_ones_release_nothing() -> None:
    acks: InOrderAcks[str] = InOrderAcks()
    acks.taken(("t", 0, 1), 5, "a")
    acks.taken(("t", 1, 1), 5, "b")
    acks.taken(("t", 1, 1), 6, "c")
    assert acks.finished(("t", 1, 1), 6) == []
    acks.forget(lambda partition: partition[1] == 0)
    assert acks.finished(("t", 1, 1), 5) == []
    assert acks.pending(("t", 1, 1)) == 0
    assert acks.finished(("t", 0, 1), 5) == ["a"]
    assert acks.finished("unknown", 1) == []


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40).flatmap(
    lambda n: st.tuples(st.just(n), st.permutations(range(n)), st.integers(0, n))))
def test_released_offsets_are_always_the_finished_prefix(case: tuple[int, list[int], int]) -> None:
    n, finish_order, failed_at = case
    # Events 0..n-1 are taken in order; all but `failed_at` (if < n) finish.
    acks: InOrderAcks[int] = InOrderAcks()
    for offset in range(n):
        acks.taken("p", offset, offset)
    released: list[int] = []
    finished: set[int] = set()
    for offset in finish_order:
        if offset == failed_at:
            continue
        finished.add(offset)
        released += acks.finished("p", offset)
        lowest_unfinished = min(set(range(n)) - finished, default=n)
        assert released == list(range(lowest_unfinished))


def faust_commit_offset(committed: int | None, acked: list[int]) -> int | None:
    """The offset Faust's consumer commits for one partition, given the last
    commit and the acknowledged offsets (faust/transport/consumer.py)."""
    from collections import defaultdict

    from faust.transport.consumer import Consumer
    from intervaltree import IntervalTree

    state = SimpleNamespace(_acked={"tp": sorted(acked)}, _gap=defaultdict(IntervalTree),
                            _committed_offset={"tp": committed},
                            _acked_index={"tp": set(acked)})
    return Consumer._new_offset(state, "tp")  # type: ignore[arg-type]


def test_faust_commits_past_an_unfinished_event_unless_acks_are_in_order() -> None:
    # Committed 10; event 10 still being routed by one actor, 11 and 12 done.
    assert faust_commit_offset(10, [11, 12]) == 13  # the reason for InOrderAcks
    acks: InOrderAcks[int] = InOrderAcks()
    for offset in (10, 11, 12):
        acks.taken("p", offset, offset)
    released = acks.finished("p", 11) + acks.finished("p", 12)
    assert faust_commit_offset(10, released) is None


def test_pure_modules_import_no_kafka_or_http_library() -> None:
    code = ("import sys, services.router.planning, services.router.in_order_acks;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'aiokafka',"
            " 'aiohttp', 'mode'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
