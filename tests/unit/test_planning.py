"""What the router plans for one `events` record, the dead letter it writes
when it cannot route it, and the order in which it acknowledges events."""

from __future__ import annotations

import json
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
from schemas.events import Event, EventDeadLetter
from services.router.in_order_acks import InOrderAcks
from services.router.matching import SubscriptionIndex
from services.router.planning import (
    MAX_DATA_DEPTH,
    Limits,
    Routed,
    Unroutable,
    after_refusal_as_too_large,
    brackets_depth,
    data_routable_as_read,
    dead_letter,
    nesting_depth,
    plan,
    record_bytes,
    refusal_may_dead_letter,
    task_key,
    without_strings,
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
    assert nesting_depth(msgspec.json.decode(outcome.event.data)) == MAX_DATA_DEPTH
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
        assert nesting_depth(msgspec.json.decode(outcome.event.data)) <= MAX_DATA_DEPTH
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


# `data` passed through as read --------------------------------------------

# JSON as anyone may write it: strings with quotes, backslashes, brackets and
# non-ASCII text, integers of any size, floats.
any_text = st.text(alphabet=st.sampled_from('ab"\\[]{}:,é\u2028\U0001F600 \n'), max_size=8)
json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-10**30, 10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=25,
)
json_objects = st.dictionaries(any_text, json_data, max_size=4)


def body_of(outcome: Routed | Unroutable) -> bytes:
    assert isinstance(outcome, Routed) and outcome.tasks, outcome
    return bytes(msgspec.json.decode(outcome.tasks[0][1], type=DeliveryTask).body)


# `data` is passed on as read from AS_READ_FROM_BYTES up; 0 takes that path for
# every record, so that small ones test it too.
AS_READ, DECODED = 0, 10**9


@settings(max_examples=300, deadline=None)
@given(json_objects, st.sampled_from([AS_READ, DECODED]))
def test_the_body_of_a_record_as_ingest_writes_it_is_the_envelope_byte_for_byte(
    data: dict, as_read_from: int
) -> None:
    # Ingest writes msgspec's encoding of the envelope: the body is that
    # envelope, whether `data` went through as read or decoded and encoded again.
    envelope = Event(id="evt_1", type="message.sent", app_id="app_1",
                     created_at=datetime(2026, 11, 22, 18, 15, 0, 123000, tzinfo=UTC), data=data)
    value = msgspec.json.encode(envelope)
    outcome = plan(value, partition=0, offset=1, timestamp_ms=0, index=index(),
                   as_read_from=as_read_from)
    assert body_of(outcome) == value


@settings(max_examples=300, deadline=None)
@given(json_objects, st.booleans(), st.sampled_from([None, 0, 2]),
       st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]),
       st.sampled_from([AS_READ, DECODED]))
def test_data_written_any_way_is_delivered_with_the_same_meaning(
    data: dict, ascii_only: bool, indent: int | None, separators: tuple[str, str],
    as_read_from: int,
) -> None:
    text = json.dumps(data, ensure_ascii=ascii_only, indent=indent, separators=separators)
    value = event(text.encode())
    outcome = plan(value, partition=0, offset=1, timestamp_ms=0, index=index(),
                   as_read_from=as_read_from)
    body = msgspec.json.decode(body_of(outcome))
    assert body["data"] == msgspec.json.decode(text) == json.loads(text)
    assert body["type"] == "message.sent" and body["app_id"] == "app_1"


def test_data_is_passed_on_as_it_was_written() -> None:
    # Whitespace, escapes and numbers' spelling are kept; so is a repeated
    # key (decoded, the last one wins, as it did before and as most parsers do).
    data = b'{ "text" : "caf\\u00e9 [x]",  "n": 1.50, "big": 123456789012345678901234567890,' \
           b' "k": 1, "k": 2 }'
    body = body_of(plan(event(data), partition=0, offset=1, timestamp_ms=0, index=index(),
                        as_read_from=AS_READ))
    assert body.endswith(b',"data":' + data + b"}")
    assert msgspec.json.decode(body)["data"] == {"text": "café [x]", "n": 1.5, "k": 2,
                                                 "big": 123456789012345678901234567890}


def test_typical_data_goes_through_as_read() -> None:
    assert data_routable_as_read(b'{"n":1,"text":"hello [1]","ok":true,"none":null,"f":false}')
    assert data_routable_as_read(b'{"items":' + b'[{"id":"a","e":"E"}],' * 0 +
                                 b'[' + b'{"q":[1,2]},' * 300 + b'{}]}')  # wide, not deep
    assert data_routable_as_read(b'{"deep":"' + b'[' * 1000 + b'"}')  # brackets in a string


@pytest.mark.parametrize(("data", "reason"), [
    # What msgspec's check of the syntax lets through and a decode refuses,
    # the decode still refuses, with the reasons it always gave.
    (b'{"a": "\xff"}', "could not be planned: UnicodeDecodeError"),
    (b'{"a": 1e999}', "not an event envelope: Number out of range"),
    (b'{"a": -1E400}', "not an event envelope: Number out of range"),
    (b'{"a": 1' + b"0" * 400 + b'.5}', "not an event envelope: Number out of range"),
    (b"[1, 2]", "not an event envelope: Expected `object`, got `array` - at `$.data`"),
    (b"null", "not an event envelope: Expected `object`, got `null` - at `$.data`"),
    (b'{"a": "\\ud800"}', "not an event envelope"),
    (b'{"a": tru}', "not an event envelope: JSON is malformed"),
    (nested(MAX_DATA_DEPTH + 1), f"nested {MAX_DATA_DEPTH + 1} levels deep"),
    (b'{"s": "' + b"]" * 300 + b'", "d": ' + b"[" * 300 + b"]" * 300 + b"}",
     "nested 301 levels deep"),
    (nested(3000), "nested too deeply to decode (recursion"),
])
def test_what_a_decode_refuses_is_dead_lettered_as_before(data: bytes, reason: str) -> None:
    for as_read_from in (AS_READ, DECODED):
        outcome = plan(event(data), partition=0, offset=0, timestamp_ms=0, index=index(),
                       as_read_from=as_read_from)
        assert isinstance(outcome, Unroutable) and reason in outcome.reason, outcome


def test_an_envelope_deeper_than_its_data_is_routed() -> None:
    # The text's depth bounds the data's; when an unknown field of the
    # envelope is the deep one, the data's own depth decides.
    value = b'{"type": "message.sent", "app_id": "app_1", "extra": %s, "data": {"a": [1]}}' % (
        b"[" * 300 + b"]" * 300)
    for as_read_from in (AS_READ, DECODED):
        outcome = plan(value, partition=0, offset=0, timestamp_ms=0, index=index(),
                       as_read_from=as_read_from)
        assert msgspec.json.decode(body_of(outcome))["data"] == {"a": [1]}


@pytest.mark.parametrize("data", [
    b'{"a": 1e5}', b'{"a": 1' + b"0" * 400 + b"}", b'{"e": "\\u00e9", "a": [1.5E3]}',
])
def test_numbers_that_might_not_fit_a_float_are_decoded_and_routed(data: bytes) -> None:
    assert not data_routable_as_read(data)  # left to the decode, which takes these
    assert msgspec.json.decode(body_of(plan(event(data), partition=0, offset=0, timestamp_ms=0,
                                            index=index(), as_read_from=AS_READ))
                               )["data"] == msgspec.json.decode(data)


@settings(max_examples=300, deadline=None)
@given(json_data)
def test_brackets_depth_agrees_with_nesting_depth(data: object) -> None:
    text = json.dumps(data, ensure_ascii=False).encode()
    assert brackets_depth(without_strings(text)) == nesting_depth(data)
    assert brackets_depth(without_strings(text), most=1) == min(nesting_depth(data), 2)


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


def test_the_depth_of_a_large_deep_record_is_counted_in_linear_time() -> None:
    # A producer's record of 1 MB of arrays 255 deep: counting its depth took
    # one pass over the text per level (2.8 s here for a routable one, 4.9 s
    # for one a level too deep, against 0.7-0.9 s before the text was
    # counted), all of it with the router's loop blocked for every tenant.
    import time

    for depth, routable in ((253, True), (255, False)):
        unit = b"[" * depth + b"]" * depth
        data = b'{"a": [' + b",".join([unit] * (950_000 // len(unit))) + b"]}"
        started = time.perf_counter()
        assert brackets_depth(without_strings(data)) == (
            depth + 2 if routable else MAX_DATA_DEPTH + 1)
        assert data_routable_as_read(data) is routable
        assert time.perf_counter() - started < 0.4
