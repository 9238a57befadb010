"""Payload formats (contract §6 `payload_format`, §7): the body a webhook's
deliveries carry. `standard` is the §4 envelope, byte for byte as routed; the
others render the event in one seed platform's documented top-level shape, so
that a receiver written for that platform takes Hookbus deliveries unchanged.
Pure: one function per format, from the envelope to the body's bytes.

Every format carries the platform's own name for the event: the most specific
alias of its type in that platform's column of the event-type table
(`schemas/event_types.py`; the alias covering the fewest canonical types, so
`message.received` is Smooch's `message:appUser`, not `message`), or the
canonical type where the platform has none (`message.updated` in nativeMsg,
`webhook.test` everywhere). The event id is not in the body (no platform puts
one there): it is the `webhook-id` header, as for every format. Signing is the
same for every format and covers the body as sent.

The shapes, from the platforms' docs (`../shared/seeds/`):

- `chatwoot` (Chatwoot "A sample webhook payload": `{"event": "event_name",
  // Attributes related to the event}`): `{"event": <name>, **data}`. The
  producer's `data` is the object's attributes, at the top level. `created_at`
  (the sample's form, `"2020-03-03 13:05:57 UTC"`) and `account` (`{"id":
  app_id}`, where Chatwoot names the account) are attributes of that object in
  Chatwoot, so a producer's own values are kept; Hookbus fills them in from the
  envelope only when `data` has none.
- `nativemsg` (nativeMsg "Example JSON Payload"): `{"event": <name>,
  "timestamp": "2025-10-08T18:15:00Z", "bot_id": app_id, **data}`: the
  timestamp in the sample's form (UTC, whole seconds), the app id where the
  sample names its bot, and `data` (`user`, `message`, …) beside them. The
  sample's in-body `signature` is left out: no body can hold its own signature,
  and the doc says to verify "the signature header", which `x-hub-signature-256`
  is, in the same `sha256=<hex>` form.
- `smooch` (Smooch v1.1 webhooks, whose triggers the seed and the table list:
  `message:appUser`, `merge:appUser`, `delivery:success`…): `{"trigger": <name>,
  "app": {"_id": app_id}, **data, "version": "v1.1", "timestamp": <Unix seconds,
  to the millisecond>}`: Smooch puts the event's objects (`messages`, `appUser`,
  `conversation`, …) at the top level beside `trigger` and `app`, and its time
  as a Unix float (`"timestamp": 1480001711.941`). Sunshine Conversations v2's
  `{"events": [{"type": "conversation:message"}]}` shape has another vocabulary
  than the table's, so it is not this format.
- `sinch` (Sinch Conversation API callbacks, whose triggers the seed lists):
  `{"app_id": app_id, "project_id": app_id, "accepted_time": …, "event_time": …,
  "trigger": <name>, <field>: data}`: times in RFC 3339 UTC to the millisecond
  (`"2024-06-15T14:23:45.123Z"`), and the event's attributes under the one field
  Sinch names for the trigger (`message` for MESSAGE_INBOUND,
  `message_delivery_report` for MESSAGE_DELIVERY, `contact_create_notification`
  for CONTACT_CREATE: `SINCH_FIELDS`), which is what Sinch receivers dispatch
  on. A type without a Sinch trigger uses Sinch's own pattern
  `<resource>_<action>_notification` (`message_sent_notification`). `trigger`
  is the name Sinch's SDKs give every callback. Hookbus has one level of
  tenancy, the app, so it fills both `app_id` and `project_id`; the event's
  time is both when it happened and when Hookbus accepted it.

Where `data` holds a key that the format itself sets beside it (`event` in
Chatwoot; `event`, `timestamp`, `bot_id` in nativeMsg; `trigger`, `app`,
`version`, `timestamp` in Smooch), the format's value is sent: the name a
receiver dispatches on is always Hookbus's. Sinch nests `data`, so nothing of it
is ever replaced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, get_args

import msgspec

from schemas.event_types import EVENT_TYPES
from schemas.events import Event
from schemas.webhooks import PayloadFormat

PAYLOAD_FORMATS: tuple[PayloadFormat, ...] = get_args(PayloadFormat)
DEFAULT_FORMAT: PayloadFormat = "standard"
SMOOCH_VERSION = "v1.1"

# The field of a Sinch callback that holds the event, per trigger (Sinch
# Conversation API callbacks; every trigger of the table's Sinch column).
SINCH_FIELDS: dict[str, str] = {
    "MESSAGE_INBOUND": "message",
    "MESSAGE_SUBMIT": "message_submit_notification",
    "MESSAGE_DELIVERY": "message_delivery_report",
    "MESSAGE_INBOUND_SMART_CONVERSATION_REDACTION": "message_redaction",
    "EVENT_INBOUND": "event",
    "EVENT_DELIVERY": "event_delivery_report",
    "CONVERSATION_START": "conversation_start_notification",
    "CONVERSATION_STOP": "conversation_stop_notification",
    "CONVERSATION_DELETE": "conversation_delete_notification",
    "CONTACT_CREATE": "contact_create_notification",
    "CONTACT_UPDATE": "contact_update_notification",
    "CONTACT_DELETE": "contact_delete_notification",
    "CONTACT_MERGE": "contact_merge_notification",
    "CONTACT_IDENTITIES_DUPLICATION": "duplicated_contact_identities_notification",
    "OPT_IN": "opt_in_notification",
    "OPT_OUT": "opt_out_notification",
    "CAPABILITY": "capability_notification",
    "CHANNEL_EVENT": "channel_event_notification",
    "SMART_CONVERSATION": "smart_conversation_notification",
    "RECORD_NOTIFICATION": "record_notification",
    "UNSUPPORTED": "unsupported_callback",
}

_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Event)


class PayloadError(ValueError):
    """A body that cannot be rendered: an unknown format (a record written by a
    newer ingest: upgrade the deliverers first), or an envelope that does not
    decode (the router, ingest and the event log write only valid ones)."""


@cache
def _names(vocabulary: str) -> dict[str, str]:
    """Every canonical type's name in `vocabulary`: its alias that covers the
    fewest types (the first listed among equals), else the type itself."""
    covers = Counter(alias for t in EVENT_TYPES for alias in set(getattr(t, vocabulary)))
    return {
        t.type: min(getattr(t, vocabulary), key=lambda alias: covers[alias], default=t.type)
        for t in EVENT_TYPES
    }


def event_name(vocabulary: str, type_: str) -> str:
    """`type_`'s name in `vocabulary` (`chatwoot`, `nativemsg`, `smooch`,
    `sinch`): its most specific alias there, or the canonical type."""
    return _names(vocabulary).get(type_, type_)


def sinch_field(trigger: str) -> str:
    """The field of a Sinch callback that holds the event of `trigger` (a Sinch
    trigger, or a canonical type that has none)."""
    return SINCH_FIELDS.get(trigger) or trigger.replace(".", "_") + "_notification"


# -- one function per format ----------------------------------------------------
def standard(event: Event) -> bytes:
    """The §4 envelope."""
    return _encoder.encode(event)


def chatwoot(event: Event) -> bytes:
    body: dict[str, Any] = {"event": event_name("chatwoot", event.type)}
    body.update((k, v) for k, v in event.data.items() if k != "event")
    body.setdefault("created_at", _seconds(event.created_at, " ") + " UTC")
    body.setdefault("account", {"id": event.app_id})
    return _encoder.encode(body)


def nativemsg(event: Event) -> bytes:
    body: dict[str, Any] = {
        "event": event_name("nativemsg", event.type),
        "timestamp": _seconds(event.created_at, "T") + "Z",
        "bot_id": event.app_id,
    }
    body.update((k, v) for k, v in event.data.items() if k not in body)
    return _encoder.encode(body)


_SMOOCH_OWN = frozenset({"trigger", "app", "version", "timestamp"})


def smooch(event: Event) -> bytes:
    body: dict[str, Any] = {"trigger": event_name("smooch", event.type),
                            "app": {"_id": event.app_id}}
    body.update((k, v) for k, v in event.data.items() if k not in _SMOOCH_OWN)
    body["version"] = SMOOCH_VERSION
    body["timestamp"] = _unix_millis(event.created_at)
    return _encoder.encode(body)


def sinch(event: Event) -> bytes:
    trigger = event_name("sinch", event.type)
    at = _rfc3339_millis(event.created_at)
    return _encoder.encode({
        "app_id": event.app_id,
        "project_id": event.app_id,
        "accepted_time": at,
        "event_time": at,
        "trigger": trigger,
        sinch_field(trigger): event.data,
    })


RENDERERS: dict[str, Callable[[Event], bytes]] = {
    "standard": standard,
    "chatwoot": chatwoot,
    "nativemsg": nativemsg,
    "smooch": smooch,
    "sinch": sinch,
}


def render(payload_format: str, envelope: bytes) -> bytes:
    """The body of a delivery in `payload_format`, from the envelope as routed
    (a task's `body`). `standard` sends the envelope itself, untouched.
    Raises `PayloadError` for an unknown format or an unreadable envelope."""
    if payload_format == "standard":
        return envelope
    renderer = RENDERERS.get(payload_format)
    if renderer is None:
        raise PayloadError(f"unknown payload format {payload_format!r}")
    try:
        event = _envelope_decoder.decode(envelope)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"the envelope cannot be rendered as {payload_format}: {exc}") from None
    return renderer(event)


# -- times ----------------------------------------------------------------------
def _utc(at: datetime) -> datetime:
    """`at` in UTC (a naive time, which no router writes, read as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _unix_millis(at: datetime) -> float:
    return round(_utc(at).timestamp(), 3)


def _seconds(at: datetime, separator: str) -> str:
    """`2026-11-22T18:15:00` in UTC (four-digit years: strftime pads none below 1000)."""
    u = _utc(at)
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}{separator}"
            f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}")


def _rfc3339_millis(at: datetime) -> str:
    return _seconds(at, "T") + f".{_utc(at).microsecond // 1000:03d}Z"
