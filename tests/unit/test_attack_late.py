"""A late review's attack on 2698087 (dropped records, app_id on attempts),
9f0f146 (event-log keys), bcc4600 (parsed-key cache) and 5613c97 ('.' in ids,
MAX_RETIRED_SIGNING). Unit only, no broker. Each test below failed when written.
Three findings were not mended here, and their tests are not kept (they would
fail): a dropped or deferred record's `app_id` is the task's claim, unchecked
for deleted or unknown webhooks (the event log must check an attempt against its
own index of what the router matched before filing it); dropped records can push
the failures that disabled a webhook out of ingest's 100-record attempts log
(which issue 11 replaces); `partition_of` is murmur2, not librdkafka's CRC32
(the event log must re-key `events` by it). See docs/design/event-log.md."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from schemas.attempts import Attempt
from schemas.deliveries import DeliveryTask
from services.deliverer.next_steps import (
    Policy,
    RecordAttempt,
    next_steps,
)
from services.eventlog.keys import (
    BadKey,
    cursor_of,
    event_key,
    events_prefix,
    inverted,
    key_of_cursor,
    part,
    split_event_key,
)
from services.router.matching import SubscriptionIndex
from services.router.planning import Unroutable, plan

NOW = 1_800_000_000.0
POLICY = Policy(schedule=(1.0, 2.0), disable_after=100.0, unknown_webhook_grace=60.0)
# A task written on `deliveries` by someone other than the router, for a webhook
# of app_owner, claiming app_victim.
FORGED = DeliveryTask(webhook_id="wh_of_app_owner", app_id="app_victim", event_id="evt_x",
                      event_type="message.received",
                      event_created_at=datetime(2026, 11, 22, tzinfo=UTC),
                      body=msgspec.Raw(b"{}"))


def _records(situation: object) -> list[Attempt]:
    plan = next_steps(FORGED, situation, failing_since=None, policy=POLICY, now=NOW)  # type: ignore[arg-type]
    return [w.attempt for w in plan.writes if isinstance(w, RecordAttempt)]


# -- 9f0f146: event-log keys -----------------------------------------------------
def test_a_key_whose_id_is_not_utf8_is_a_bad_key_not_a_unicode_error() -> None:
    """BadKey is what the API is to answer with a 400; a cursor's bytes after the
    prefix are the client's (key_of_cursor checks only the prefix), so
    split_event_key on one must raise BadKey, not UnicodeDecodeError (a 500
    under `except BadKey`)."""
    key = events_prefix("app_1") + inverted(0) + b"\x00\x01\xff"
    with pytest.raises(BadKey):
        split_event_key(key)


def test_a_cursor_that_is_no_key_of_the_kind_listed_is_refused() -> None:
    """key_of_cursor's promise: 'refused unless it is a key of the app and kind
    that is being listed'. It checks only the prefix: the app's prefix and any
    bytes pass, though no E key looks like that."""
    forged = cursor_of(events_prefix("app_1") + b"\x00")
    with pytest.raises(BadKey):
        key_of_cursor(forged, events_prefix("app_1"))


def test_an_id_that_is_not_encodable_is_a_bad_key() -> None:
    """An id that cannot be part of a key is BadKey, as the docstring says, not
    UnicodeEncodeError. (JSON ids cannot hold lone surrogates, msgspec refuses
    them, and yarl turns bad %-escapes in a query into U+FFFD; aiohttp does keep
    undecodable header bytes as surrogates: a future header-borne id would do it.)"""
    with pytest.raises(BadKey):
        part("evt_\udc80", "event id")


def test_event_keys_still_split() -> None:  # a control: what held up
    assert split_event_key(event_key("a", 5, "e")) == ("a", 5, "e")


# -- 5613c97: the router mirrors ingest's '.' rule, not its length rule ---------
def test_the_router_refuses_an_event_id_ingest_would_refuse_as_too_long() -> None:
    """5613c97 made the router refuse what ingest refuses ('.' in an id), since
    producers write `events` directly. Ingest also bounds an id to 128
    characters; the router does not: a direct producer's 60,000-character id is
    routed, signed into every delivery's `webhook-id` header (receivers answer
    431 or drop the connection: failures on the app's breaker and disable
    streak), and is past what an event-log key takes (part(): < 65,536 bytes;
    a 4-byte character makes 16,384 of them too many)."""
    index = SubscriptionIndex()
    index.put("wh_1", "app_1", ["*"])
    for event_id in ("e" * 129, "e" * 60_000, "\U0001F600" * 16_384):
        value = msgspec.json.encode({"id": event_id, "type": "message.sent",
                                     "app_id": "app_1", "data": {}})
        outcome = plan(value, partition=0, offset=0, timestamp_ms=1_795_000_000_000,
                       index=index)
        assert isinstance(outcome, Unroutable), f"an id of {len(event_id)} characters was routed"
