"""The management API's calls as data (contract §6): each function returns the
`Call` to make; `Client` and `AsyncClient` send them. Pure.

A call is `retryable` when sending it again cannot do something twice: reads,
deletes, and publishes (with an `Idempotency-Key` a retried publish is the same
event; without one the methods give each event its id before the first try,
since a 503 from ingest means "not acknowledged", not "not written"). Webhook
writes are not: a 503 may mean "written, not yet confirmed" (read it back)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Call:
    method: str
    path: str                      # from the API's root, quoted
    body: bytes | None = None      # JSON
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    retryable: bool = False


def _app(app_id: str, *parts: str) -> str:
    return "/v1/apps/" + "/".join(quote(p, safe="") for p in (app_id, *parts))


def _json(value: Any) -> bytes:
    return _encoder.encode(value)


def _params(**values: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


def event_body(type_: str, data: Mapping[str, Any] | None = None, *, id: str | None = None,
               created_at: datetime | str | None = None) -> dict[str, Any]:
    """An event as `POST …/events` takes it (`id` and `created_at` optional)."""
    body: dict[str, Any] = {"type": type_, "data": dict(data or {})}
    if id is not None:
        body["id"] = id
    if created_at is not None:
        body["created_at"] = created_at.isoformat() if isinstance(created_at, datetime) \
            else created_at
    return body


def _key(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}


# Events -------------------------------------------------------------------

def publish(app_id: str, event: Mapping[str, Any], idempotency_key: str | None = None) -> Call:
    return Call("POST", _app(app_id, "events"), _json(event), headers=_key(idempotency_key),
                retryable=True)


def publish_batch(app_id: str, events: Sequence[Mapping[str, Any]],
                  idempotency_key: str | None = None) -> Call:
    return Call("POST", _app(app_id, "events", "batch"), _json({"events": list(events)}),
                headers=_key(idempotency_key), retryable=True)


def list_events(app_id: str, *, type: str | None = None, status: str | None = None,
                since: datetime | str | None = None, until: datetime | str | None = None,
                limit: int | None = None, cursor: str | None = None) -> Call:
    return Call("GET", _app(app_id, "events"), retryable=True, params=_params(
        type=type, status=status, since=since, until=until, limit=limit, cursor=cursor))


def get_event(app_id: str, event_id: str) -> Call:
    return Call("GET", _app(app_id, "events", event_id), retryable=True)


def resend_event(app_id: str, event_id: str, webhook_id: str | None = None) -> Call:
    body = {"webhook_id": webhook_id} if webhook_id else {}
    return Call("POST", _app(app_id, "events", event_id, "resend"), _json(body))


def event_types() -> Call:
    return Call("GET", "/v1/event-types", retryable=True)


# Webhooks -----------------------------------------------------------------

def list_webhooks(app_id: str) -> Call:
    return Call("GET", _app(app_id, "webhooks"), retryable=True)


def create_webhook(app_id: str, fields: Mapping[str, Any]) -> Call:
    return Call("POST", _app(app_id, "webhooks"), _json(dict(fields)))


def get_webhook(app_id: str, webhook_id: str) -> Call:
    return Call("GET", _app(app_id, "webhooks", webhook_id), retryable=True)


def update_webhook(app_id: str, webhook_id: str, fields: Mapping[str, Any]) -> Call:
    return Call("PATCH", _app(app_id, "webhooks", webhook_id), _json(dict(fields)))


def delete_webhook(app_id: str, webhook_id: str) -> Call:
    return Call("DELETE", _app(app_id, "webhooks", webhook_id), retryable=True)


def rotate_secret(app_id: str, webhook_id: str, secret: str | None = None) -> Call:
    body = {"secret": secret} if secret else {}
    return Call("POST", _app(app_id, "webhooks", webhook_id, "secret", "rotate"), _json(body))


def send_test_event(app_id: str, webhook_id: str) -> Call:
    return Call("POST", _app(app_id, "webhooks", webhook_id, "test"))


def attempts(app_id: str, webhook_id: str, *, limit: int | None = None,
             cursor: str | None = None) -> Call:
    return Call("GET", _app(app_id, "webhooks", webhook_id, "attempts"), retryable=True,
                params=_params(limit=limit, cursor=cursor))


def stats(app_id: str, webhook_id: str) -> Call:
    return Call("GET", _app(app_id, "webhooks", webhook_id, "stats"), retryable=True)


def start_replay(app_id: str, webhook_id: str, *, since: datetime | str | None = None,
                 until: datetime | str | None = None) -> Call:
    return Call("POST", _app(app_id, "webhooks", webhook_id, "replay"),
                _json(_params(since=since, until=until)))


def replay_job(app_id: str, webhook_id: str, job_id: str) -> Call:
    return Call("GET", _app(app_id, "webhooks", webhook_id, "replay", job_id), retryable=True)


def gone_after_retry(call: Call, status: int, attempt: int) -> bool:
    """A DELETE answered 404 on a retry: done (the try before, answered 503 as
    "written, not yet confirmed", deleted it), not an error."""
    return call.method == "DELETE" and status == 404 and attempt > 1


def answer(status: int, body: bytes, request_id: str | None = None, *,
           pick: str | None = None) -> Any:
    """The JSON of a 2xx answer (None when empty), or its field `pick`; raises the
    API's error otherwise, and a HookbusError for a 2xx that is not the API's
    (a wrong URL whose server answers every path with a page)."""
    from hookbus.errors import HookbusError, error_from_answer

    if not 200 <= status < 300:
        raise error_from_answer(status, body, request_id)
    if not body.strip():
        return None
    try:
        result = msgspec.json.decode(body)
        return result if pick is None else result[pick]
    except (msgspec.DecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        what = f"no {pick!r} in " if pick else ""
        text = body[:200].decode("utf-8", errors="replace")
        raise HookbusError(status, "INVALID_ANSWER",
                           f"not the Hookbus API's answer ({what}{text!r}); is the URL the "
                           "API's (HOOKBUS_URL / --url)?", request_id=request_id) from None
