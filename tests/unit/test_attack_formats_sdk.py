"""A hostile review of payload formats and the SDK/CLI (issue 14: commits
81b4355, a9c7c9d, 7e82860, 30948cb, 3bc6e4e, 8dcbd8f, a33b57e, 762e59a,
e48cec4). Each test failed against the code as it was reviewed."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from hookbus import api
from hookbus.batching import batch_keys
from hookbus.cli import cli
from hookbus.config import resolve
from hookbus.errors import HookbusError
from hookbus.methods import ApiMethods
from hookbus.signatures import Verifier, WebhookVerificationError
from schemas.deliveries import DeliveryTask
from schemas.webhooks import webhook_decoder
from services.common.secrets import signing_key
from services.common.target_policy import TargetPolicy
from services.deliverer.attempt import Attempter
from services.deliverer.outcomes import Failed
from services.deliverer.signing import signature_headers

# A record as ingest wrote it before payload formats (as in test_payload_formats).
RECORD = (
    b'{"id":"wh_01HZX3","app_id":"app_1","target":"https://example.com/hook",'
    b'"triggers":["message"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",'
    b'"created_at":"2026-11-22T18:15:00.123Z","updated_at":"2026-11-22T18:15:00.123Z",'
    b'"version":2,"app_limit":10,"signature_scheme":"v1"}'
)
ENVELOPE = (b'{"id":"evt_1","type":"message.received","app_id":"app_1",'
            b'"created_at":"2026-11-22T18:15:00.123Z","data":{"text":"hi"}}')


# -- payload formats ----------------------------------------------------------------

async def test_a_record_naming_a_newer_format_is_readable_and_fails_its_attempts_with_why() -> None:
    """A newer ingest writes `payload_format: "xml"` (contract: unknown values
    are skipped, types never change). The record did not decode: every reader
    ignored it, and ingest's view *repaired* it, re-appending the older record
    or, for a new webhook, a tombstone (a delete is final). The deliverer went
    on sending the old format, or nothing, without a word. It must read the
    record, and each attempt must fail with the reason (retried: a deliverer
    upgraded in the meantime sends it), never crash."""
    webhook = webhook_decoder.decode(RECORD[:-1] + b',"payload_format":"xml"}')
    assert webhook.payload_format == "xml"
    task = DeliveryTask(webhook_id=webhook.id, app_id="app_1", event_id="evt_1",
                        event_type="message.received",
                        event_created_at=webhook.created_at, body=ENVELOPE)
    async with aiohttp.ClientSession() as session:
        attempter = Attempter(session, TargetPolicy(allow_http=False), "hookbus/test", 1.0)
        report = await attempter.attempt(webhook, task)
    assert isinstance(report.outcome, Failed)
    assert "unknown payload format 'xml'" in report.outcome.error


# -- signatures ---------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdefghijklmn").decode()


@pytest.mark.parametrize("timestamp", ["9" * 400, "1" * 5000, "0" * 30 + "1"])
def test_a_huge_timestamp_is_a_verification_error_not_a_crash(timestamp: str) -> None:
    """`int()` of 5000 digits raises ValueError (the interpreter's digit limit)
    and `now - int("9" * 400)` OverflowError: a receiver's handler answered 500
    to anyone sending one header, where the verifier promises its own error."""
    headers = signature_headers([signing_key(SECRET)], "evt_1", 1, b"{}")
    headers["webhook-timestamp"] = timestamp
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).check(headers, b"{}")


def test_a_signed_body_that_is_not_utf8_json_is_a_verification_error() -> None:
    """msgspec raises UnicodeDecodeError (not DecodeError) for a string that is
    not UTF-8; and a `str` body with a lone surrogate cannot be encoded."""
    body = b'{"a":"\xff"}'
    headers = signature_headers([signing_key(SECRET)], "evt_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).verify(headers, body)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).verify(headers, '{"a":"\ud800"}')


# -- batching and retries -----------------------------------------------------------

def test_publishing_no_events_with_a_key_publishes_nothing() -> None:
    """`publish_many([], idempotency_key=k)` raised IndexError from `batch_keys`."""
    assert batch_keys("k", 0) == []
    assert batch_keys(None, 0) == []


class _Calls(ApiMethods[api.Call]):
    """The calls the SDK's methods make, kept instead of sent."""

    def __init__(self) -> None:
        self.config = resolve({}, app="app_1")

    def _run(self, call: api.Call, pick: str | None = None) -> api.Call:
        return call


def _body(call: api.Call) -> Any:
    assert call.body is not None
    import json

    return json.loads(call.body)


def test_a_publish_without_a_key_carries_its_own_event_id_so_a_retry_is_the_same_event() -> None:
    """A keyless publish is retried on 503, and ingest answers 503 when Kafka's
    acknowledgement failed (a timeout), which does not mean the record was not
    written: the retry got a new `evt_` id from ingest, a second event that
    receivers cannot deduplicate (contract §4: the id is the idempotency key).
    The SDK names the event itself, once, before the first try."""
    calls = _Calls()
    first = calls.publish("message.received", {"n": 1})
    assert first.retryable
    assert _body(first)["id"].startswith("evt_")
    assert _body(first)["id"] != _body(calls.publish("message.received"))["id"]
    # An id or a key of the caller's is theirs: nothing is added.
    assert _body(calls.publish("message.received", id="mine"))["id"] == "mine"
    assert "id" not in _body(calls.publish("message.received", idempotency_key="k"))


class _BatchCalls(_Calls):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[api.Call] = []

    def _run(self, call: api.Call, pick: str | None = None) -> Any:
        self.sent.append(call)
        return [e["id"] if "id" in e else "derived" for e in _body(call)["events"]]


def test_a_batch_without_a_key_names_each_event_once() -> None:
    from hookbus.client import Client

    calls = _BatchCalls()
    events = [{"type": "message.received"}, {"type": "message.received", "id": "mine"}]
    ids = Client.publish_many(calls, events, batch_size=1)  # type: ignore[arg-type]
    assert ids[0].startswith("evt_") and ids[1] == "mine"
    assert events == [{"type": "message.received"},  # the caller's dicts are not changed
                      {"type": "message.received", "id": "mine"}]
    keyed = _BatchCalls()
    assert Client.publish_many(keyed, events[:1], idempotency_key="k") == ["derived"]  # type: ignore[arg-type]


# -- answers ------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"<!doctype html><html>app</html>", b"[1, 2]", b'{"x": 1}'])
def test_a_2xx_answer_that_is_not_the_apis_is_a_hookbus_error(body: bytes) -> None:
    """A wrong --url / HOOKBUS_URL pointing at a web app that answers 200 with
    its index page for every path (any SPA dev server) raised msgspec's
    DecodeError, or KeyError / TypeError picking a field: the CLI printed a
    traceback, and the SDK's "every method raises HookbusError" did not hold."""
    with pytest.raises(HookbusError) as raised:
        api.answer(200, body, pick="id")
    assert "not the Hookbus API" in raised.value.message


# -- the CLI ------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["[{\"type\": ", "{\"type\": \"message.received\"}\nnope"])
def test_a_malformed_batch_file_is_a_usage_error_not_a_traceback(tmp_path: Path,
                                                                 content: str) -> None:
    batch = tmp_path / "events.json"
    batch.write_text(content)
    for path in (str(batch), str(tmp_path / "missing.json")):
        result = CliRunner().invoke(cli, ["--app", "a", "events", "publish", "--batch", path])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "--batch" in result.output


def test_json_errors_are_json_for_a_configuration_error_too() -> None:
    """With --json a failure prints the API's error shape on stderr; a missing
    app (no --app, no HOOKBUS_APP) printed plain text."""
    import json

    result = CliRunner(env={"HOOKBUS_APP": None}).invoke(
        cli, ["--json", "--url", "http://127.0.0.1:9", "webhooks", "list"])
    assert result.exit_code == 2
    error = json.loads(result.stderr)["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "app" in error["message"]


def test_the_cli_can_change_a_webhooks_payload_format() -> None:
    """`webhooks create --payload-format` exists, `webhooks update` had none."""
    result = CliRunner().invoke(cli, ["webhooks", "update", "--help"])
    assert "--payload-format" in result.output


# -- the Kafka publisher ------------------------------------------------------------

def test_the_publisher_refuses_an_event_ingest_would_answer_413() -> None:
    """"Checked as ingest checks them": a 1 MB event went to `events` (the
    broker takes 1 MB), where ingest answers 413; its delivery task, a little
    larger, could then only be dead-lettered by the router, after the
    publisher had returned it as published."""
    from hookbus.publisher import MAX_EVENT_BYTES, envelope
    from services.ingest.http import MAX_BODY

    assert MAX_EVENT_BYTES == MAX_BODY
    envelope("a", "message.received", {"text": "x" * (MAX_BODY - 500)})
    with pytest.raises(ValueError, match="over the 262144"):
        envelope("a", "message.received", {"text": "x" * MAX_BODY})
