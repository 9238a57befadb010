"""Payload formats (schemas/payload_formats.py): a golden body per format and
event type, the platform names as a table, properties over any event (every
format renders valid JSON holding the data where its platform puts it), the
API's validation of `payload_format`, old webhook records, the OpenAPI schema
and the README's examples.

Golden files are in tests/unit/golden/payload_formats/<format>/<type>.json, the
body as sent, indented. After a deliberate change of a shape, write them again
with `HOOKBUS_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_payload_formats.py`
and review the diff."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.api import WebhookCreate, WebhookPatch
from schemas.event_types import EVENT_TYPES
from schemas.events import Event
from schemas.payload_formats import (
    PAYLOAD_FORMATS,
    RENDERERS,
    SINCH_FIELDS,
    PayloadError,
    event_name,
    render,
    sinch_field,
)
from schemas.webhooks import webhook_decoder
from services.common.target_policy import TargetPolicy
from services.ingest.errors import ApiError
from services.ingest.openapi import openapi_document
from services.ingest.validation import webhook_problems

GOLDEN = Path(__file__).resolve().parent / "golden" / "payload_formats"
README = Path(__file__).resolve().parents[2] / "README.md"
REGENERATE = os.environ.get("HOOKBUS_REGEN_GOLDEN") == "1"
AT = datetime(2026, 11, 22, 18, 15, 0, 123000, tzinfo=UTC)
TYPES = [t.type for t in EVENT_TYPES]

# The producer's `data` of each golden event, by resource: shaped like the
# objects the platforms send, so that the golden bodies read like theirs.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "message": {"id": 1, "content": "Hi, I need help!", "message_type": "incoming",
                "user": {"id": "67890", "phone": "+15555550123"},
                "conversation": {"display_id": 7}},
    "conversation": {"id": 7, "status": "open", "inbox_id": 1,
                     "meta": {"sender": {"id": 1, "name": "Ada"}}},
    "contact": {"id": "67890", "name": "Ada", "phone": "+15555550123"},
}
OTHER_DATA: dict[str, Any] = {"id": "x_1", "channel": "WHATSAPP", "detail": {"ok": True}}


def golden_event(type_: str) -> Event:
    data = dict(SAMPLE_DATA.get(type_.split(".")[0], OTHER_DATA))
    if type_ == "conversation.updated":
        data["changed_attributes"] = [{"status": {"previous_value": "pending",
                                                  "current_value": "open"}}]
    if type_ == "webhook.test":
        data = {"webhook_id": "wh_1"}
    return Event(id="evt_golden", type=type_, app_id="app_1", created_at=AT, data=data)


def pretty(body: bytes) -> str:
    return msgspec.json.format(body, indent=2).decode() + "\n"


# -- golden bodies -----------------------------------------------------------------
@pytest.mark.parametrize("payload_format", PAYLOAD_FORMATS)
@pytest.mark.parametrize("type_", TYPES)
def test_golden_body(payload_format: str, type_: str) -> None:
    envelope = msgspec.json.encode(golden_event(type_))
    body = render(payload_format, envelope)
    path = GOLDEN / payload_format / f"{type_}.json"
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pretty(body))
    assert path.exists(), f"no golden file {path}: see this module's docstring"
    assert pretty(body) == path.read_text()


def test_every_golden_file_is_a_format_and_a_type() -> None:
    found = {(p.parent.name, p.stem) for p in GOLDEN.glob("*/*.json")}
    assert found == {(f, t) for f in PAYLOAD_FORMATS for t in TYPES}


# -- names -------------------------------------------------------------------------
@pytest.mark.parametrize(("vocabulary", "type_", "name"), [
    # The most specific alias: `message` covers three types, `message:appMaker` two.
    ("smooch", "message.received", "message:appUser"),
    ("smooch", "message.sent", "message:appMaker"),
    ("smooch", "message.internal", "message:appMaker"),
    ("smooch", "message.delivered", "delivery:success"),
    ("smooch", "contact.merged", "merge:appUser"),
    ("chatwoot", "message.internal", "message_created"),
    ("chatwoot", "widget.opened", "webwidget_triggered"),
    ("chatwoot", "conversation.typing_off", "conversation_typing_off"),
    ("sinch", "message.delivery_failed", "MESSAGE_DELIVERY"),
    ("sinch", "conversation.created", "CONVERSATION_START"),
    ("nativemsg", "contact.created", "user.created"),
    ("nativemsg", "message.sent", "message.sent"),
    # None in the vocabulary: the canonical type.
    ("nativemsg", "message.updated", "message.updated"),
    ("smooch", "conversation.created", "conversation.created"),
    ("sinch", "message.sent", "message.sent"),
    ("chatwoot", "webhook.test", "webhook.test"),
])
def test_event_names(vocabulary: str, type_: str, name: str) -> None:
    assert event_name(vocabulary, type_) == name


def test_every_name_is_an_alias_of_the_type_or_the_type() -> None:
    for event_type in EVENT_TYPES:
        for vocabulary in ("chatwoot", "nativemsg", "smooch", "sinch"):
            aliases = getattr(event_type, vocabulary)
            name = event_name(vocabulary, event_type.type)
            assert name in aliases if aliases else name == event_type.type


@pytest.mark.parametrize(("trigger", "field"), [
    ("MESSAGE_INBOUND", "message"),
    ("MESSAGE_DELIVERY", "message_delivery_report"),
    ("CONTACT_CREATE", "contact_create_notification"),
    ("CONTACT_IDENTITIES_DUPLICATION", "duplicated_contact_identities_notification"),
    ("message.sent", "message_sent_notification"),
    ("webhook.test", "webhook_test_notification"),
])
def test_sinch_fields(trigger: str, field: str) -> None:
    assert sinch_field(trigger) == field


def test_every_sinch_trigger_of_the_table_has_its_field() -> None:
    assert {alias for t in EVENT_TYPES for alias in t.sinch} == set(SINCH_FIELDS)


# -- rendering rules -------------------------------------------------------------------
def test_standard_is_the_envelope_byte_for_byte() -> None:
    envelope = b'{"id":"evt_1","type":"message.received","app_id":"a",' \
               b'"created_at":"2026-11-22T18:15:00.123Z","data":{"n":1.50}}'
    assert render("standard", envelope) == envelope


def test_the_formats_own_fields_win_over_data_but_chatwoot_keeps_its_attributes() -> None:
    data = {"event": "forged", "trigger": "forged", "timestamp": 1, "bot_id": "b", "app": "x",
            "version": "v9", "created_at": 1583240757, "account": {"id": 3, "name": "Acme"}}
    envelope = msgspec.json.encode(Event(id="e", type="message.received", app_id="app_1",
                                         created_at=AT, data=data))
    chatwoot = json.loads(render("chatwoot", envelope))
    assert chatwoot["event"] == "message_created"
    assert (chatwoot["created_at"], chatwoot["account"]) == (1583240757, {"id": 3, "name": "Acme"})
    nativemsg = json.loads(render("nativemsg", envelope))
    assert (nativemsg["event"], nativemsg["timestamp"], nativemsg["bot_id"]) == \
        ("message.received", "2026-11-22T18:15:00Z", "app_1")
    smooch = json.loads(render("smooch", envelope))
    assert (smooch["trigger"], smooch["app"], smooch["version"], smooch["timestamp"]) == \
        ("message:appUser", {"_id": "app_1"}, "v1.1", 1795371300.123)
    assert json.loads(render("sinch", envelope))["message"] == data


def test_times_are_in_utc_whatever_the_envelopes_offset() -> None:
    local = AT.astimezone(timezone(timedelta(hours=-8)))
    envelope = msgspec.json.encode(Event(id="e", type="contact.created", app_id="a",
                                         created_at=local, data={}))
    assert json.loads(render("chatwoot", envelope))["created_at"] == "2026-11-22 18:15:00 UTC"
    assert json.loads(render("nativemsg", envelope))["timestamp"] == "2026-11-22T18:15:00Z"
    assert json.loads(render("sinch", envelope))["event_time"] == "2026-11-22T18:15:00.123Z"
    assert json.loads(render("smooch", envelope))["timestamp"] == AT.timestamp()


@pytest.mark.parametrize(("payload_format", "envelope", "problem"), [
    ("xml", b'{"id":"e","type":"message.received","app_id":"a",'
            b'"created_at":"2026-11-22T18:15:00Z"}', "unknown payload format 'xml'"),
    ("chatwoot", b"not json", "cannot be rendered as chatwoot"),
    ("sinch", b'{"id":"e"}', "cannot be rendered as sinch"),
])
def test_what_cannot_be_rendered_is_a_payload_error(payload_format: str, envelope: bytes,
                                                     problem: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(problem)):
        render(payload_format, envelope)
    assert issubclass(PayloadError, ValueError)  # the attempter's failed attempt


# -- properties --------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
EVENTS = st.builds(
    Event,
    id=st.just("evt_1"),
    type=st.sampled_from(TYPES),
    app_id=st.text(min_size=1, max_size=20),
    created_at=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                            timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                       timezone(timedelta(hours=-8))])),
    data=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6),
)


def _millis(at: datetime) -> datetime:
    utc = at.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


@given(EVENTS)
def test_every_format_renders_any_event_as_json_holding_its_data(event: Event) -> None:
    envelope = msgspec.json.encode(event)
    data = json.loads(msgspec.json.encode(event.data))
    utc = event.created_at.astimezone(UTC)
    for payload_format in PAYLOAD_FORMATS:
        body = json.loads(render(payload_format, envelope))  # the stdlib's parser: valid JSON
        assert isinstance(body, dict)
        if payload_format == "standard":
            assert body == json.loads(envelope)
            continue
        name = event_name(payload_format, event.type)
        if payload_format == "sinch":
            assert (body["trigger"], body["app_id"]) == (name, event.app_id)
            assert body[sinch_field(name)] == data
            assert datetime.fromisoformat(body["event_time"]) == _millis(utc)
            continue
        own = {"chatwoot": {"event"}, "nativemsg": {"event", "timestamp", "bot_id"},
               "smooch": {"trigger", "app", "version", "timestamp"}}[payload_format]
        assert {k: v for k, v in data.items() if k not in own} == \
            {k: body[k] for k in data if k not in own}
        if payload_format == "chatwoot":
            assert body["event"] == name
            if "created_at" in data:
                assert body["created_at"] == data["created_at"]
            else:
                assert datetime.strptime(body["created_at"], "%Y-%m-%d %H:%M:%S UTC") == \
                    utc.replace(microsecond=0, tzinfo=None)
            assert body["account"] == data.get("account", {"id": event.app_id})
        elif payload_format == "nativemsg":
            assert (body["event"], body["bot_id"]) == (name, event.app_id)
            assert datetime.fromisoformat(body["timestamp"]) == utc.replace(microsecond=0)
        else:
            assert (body["trigger"], body["app"]) == (name, {"_id": event.app_id})
            assert abs(body["timestamp"] - utc.timestamp()) <= 0.0006  # to the millisecond


@given(EVENTS, st.sampled_from(PAYLOAD_FORMATS))
def test_rendering_is_deterministic(event: Event, payload_format: str) -> None:
    envelope = msgspec.json.encode(event)
    assert render(payload_format, envelope) == render(payload_format, envelope)
    assert RENDERERS[payload_format](event) == render(payload_format, envelope) \
        or payload_format == "standard"


# -- the webhook's field ------------------------------------------------------------------
POLICY = TargetPolicy(allow_http=False)


@pytest.mark.parametrize("payload_format", PAYLOAD_FORMATS)
def test_each_format_is_accepted(payload_format: str) -> None:
    body = WebhookCreate(target="https://example.com/h", payload_format=payload_format)
    assert webhook_problems(body, POLICY) == []


@pytest.mark.parametrize("payload_format", ["", "Standard", "xml", "smooch ", "json"])
def test_another_format_is_a_400_naming_the_formats(payload_format: str) -> None:
    problems = webhook_problems(
        WebhookCreate(target="https://example.com/h", payload_format=payload_format), POLICY)
    error = json.loads(ApiError.invalid(problems).body())
    assert error == {"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": "payload_format: must be one of standard, chatwoot, nativemsg, smooch, sinch",
        "details": [{"field": "payload_format",
                     "reason": "must be one of standard, chatwoot, nativemsg, smooch, sinch"}]}}


def test_requests_default_to_standard_and_a_patch_to_unchanged() -> None:
    assert msgspec.json.decode(b'{"target": "https://e.com"}', type=WebhookCreate) \
        .payload_format == "standard"
    assert msgspec.json.decode(b"{}", type=WebhookPatch).payload_format is msgspec.UNSET
    assert msgspec.json.decode(b'{"payload_format": "sinch"}', type=WebhookPatch) \
        .payload_format == "sinch"


# A record as ingest wrote it before payload formats (golden: never edit).
RECORD_BEFORE_FORMATS = (
    b'{"id":"wh_01HZX3","app_id":"app_1","target":"https://example.com/hook",'
    b'"triggers":["message"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",'
    b'"created_at":"2026-11-22T18:15:00.123Z","updated_at":"2026-11-22T18:15:00.123Z",'
    b'"version":2,"app_limit":10,"signature_scheme":"v1"}'
)


class RecordBeforeFormats(msgspec.Struct, kw_only=True):  # an older reader's fields
    id: str
    target: str
    secret: str


def test_a_record_written_before_formats_is_standard_and_older_readers_skip_the_field() -> None:
    webhook = webhook_decoder.decode(RECORD_BEFORE_FORMATS)
    assert (webhook.id, webhook.payload_format) == ("wh_01HZX3", "standard")
    assert b"payload_format" not in msgspec.json.encode(webhook)  # standard writes nothing new
    chatwoot = msgspec.structs.replace(webhook, payload_format="chatwoot")
    encoded = msgspec.json.encode(chatwoot)
    assert webhook_decoder.decode(encoded) == chatwoot
    assert msgspec.json.decode(encoded, type=RecordBeforeFormats).id == "wh_01HZX3"


def test_a_record_naming_a_format_of_a_newer_version_decodes() -> None:
    # Not unreadable (which ingest would repair away): its attempts fail with the
    # reason (tests/unit/test_attack_formats_sdk.py).
    webhook = webhook_decoder.decode(RECORD_BEFORE_FORMATS[:-1] + b',"payload_format":"xml"}')
    assert webhook.payload_format == "xml"


def test_the_openapi_document_names_every_format() -> None:
    schemas = openapi_document("test")["components"]["schemas"]
    for name in ("WebhookCreate", "WebhookPatch", "WebhookOut"):
        assert schemas[name]["properties"]["payload_format"]["enum"] == list(PAYLOAD_FORMATS)
    assert "payload_format" in schemas["WebhookOut"]["required"]


# -- the README --------------------------------------------------------------------------
def test_readme_examples_are_what_each_format_sends() -> None:
    section = README.read_text().split("### Payload formats", 1)[1].split("\n## ", 1)[0]
    envelope = re.search(r"```json\n(.*?)```", section, re.S)
    assert envelope is not None
    event = msgspec.json.decode(envelope[1].encode(), type=Event)
    examples = dict(re.findall(r"`(\w+)`:\n\n```json\n(.*?)```", section, re.S))
    assert set(examples) == set(PAYLOAD_FORMATS) - {"standard"}
    for payload_format, example in examples.items():
        assert json.loads(render(payload_format, msgspec.json.encode(event))) == \
            json.loads(example), payload_format
