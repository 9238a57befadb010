"""What the router plans for one `events` record."""

from __future__ import annotations

import msgspec

from schemas.deliveries import DeliveryTask
from services.router.matching import SubscriptionIndex
from services.router.planning import Routed, Unroutable, plan


def index() -> SubscriptionIndex:
    idx = SubscriptionIndex()
    idx.put("wh_msg", "app_1", ["message"])
    idx.put("wh_all", "app_1", ["*"])
    idx.put("wh_other_app", "app_2", ["*"])
    return idx


def routed(value: bytes, offset: int = 7) -> Routed:
    outcome = plan(value, partition=1, offset=offset, timestamp_ms=1_795_000_000_000,
                   index=index())
    assert isinstance(outcome, Routed)
    return outcome


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


def test_poison_records_are_unroutable() -> None:
    for value, reason in [
        (None, "empty"),
        (b"not json", "not an event envelope"),
        (b'{"app_id": "app_1"}', "not an event envelope"),
        (b'{"type": "nope", "app_id": "app_1"}', "unknown event type"),
        (b'{"type": "webhook.test", "app_id": "app_1"}', "may not be published"),
        (b'{"type": "message.sent", "app_id": "app_1", "data": 3}', "not an event envelope"),
    ]:
        outcome = plan(value, partition=0, offset=0, timestamp_ms=0, index=index())
        assert isinstance(outcome, Unroutable) and reason in outcome.reason
