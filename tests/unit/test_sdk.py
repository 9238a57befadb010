"""The SDK's pure parts: backoff schedule, batching, settings, errors, calls,
signature verification and the framework adapters (duck-typed requests)."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookbus import api
from hookbus.batching import MAX_BATCH, batch_keys, chunks
from hookbus.config import ConfigError, resolve, require_app
from hookbus.errors import HookbusError, error_from_answer
from hookbus.receivers import verify_flask, verify_starlette
from hookbus.retry_policy import Backoff, retry_after_seconds
from hookbus.signatures import Verifier, WebhookVerificationError
from services.common.secrets import generate_private_key, private_key, public_key
from services.deliverer.signing import signature_headers

NOW = datetime(2026, 11, 22, 18, 15, tzinfo=UTC)


# Backoff -------------------------------------------------------------------

def test_backoff_schedule_doubles_up_to_the_cap() -> None:
    assert Backoff(attempts=6, base=0.5, cap=4).schedule() == [0.5, 1, 2, 4, 4]
    assert Backoff(attempts=1).schedule() == []


@pytest.mark.parametrize(("status", "attempt", "retried"), [
    (503, 1, True), (429, 4, True), (503, 5, False), (500, 1, False), (400, 1, False),
    (202, 1, False),
])
def test_which_answers_are_retried(status: int, attempt: int, retried: bool) -> None:
    assert Backoff(attempts=5).should_retry(status, attempt) is retried


@pytest.mark.parametrize(("header", "seconds"), [
    ("0", 0), ("7", 7), (" 3 ", 3), ("1000", 60),
    (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30),
    (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0),
])
def test_retry_after_is_honoured_up_to_a_bound(header: str, seconds: float) -> None:
    assert Backoff(max_retry_after=60).delay(1, header, jitter=0.5, now=NOW) == seconds


@pytest.mark.parametrize("header", ["soon", "-1", "1.5", ""])
def test_a_malformed_retry_after_falls_back_to_the_schedule(header: str) -> None:
    assert retry_after_seconds(header, NOW) is None
    assert Backoff(base=1).delay(2, header, jitter=1) == 2


@given(st.integers(1, 50), st.floats(0, 1))
def test_jittered_delays_stay_within_the_cap(attempt: int, jitter: float) -> None:
    backoff = Backoff(attempts=60, base=0.5, cap=8)
    assert 0 <= backoff.delay(attempt, jitter=jitter) <= 8


def test_invalid_backoffs_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(attempts=0)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


# Batching ------------------------------------------------------------------

@given(st.lists(st.integers(), max_size=1300), st.integers(1, MAX_BATCH))
def test_chunks_keep_every_item_in_order_within_the_limit(items: list[int], size: int) -> None:
    batches = chunks(items, size)
    assert [i for b in batches for i in b] == items
    assert all(0 < len(b) <= size for b in batches)
    assert len(batches) == -(-len(items) // size)


def test_chunks_refuse_a_size_over_the_api_limit() -> None:
    with pytest.raises(ValueError):
        chunks([1], MAX_BATCH + 1)


def test_batch_keys_number_batches_only_when_there_are_several() -> None:
    assert batch_keys(None, 2) == [None, None]
    assert batch_keys("k", 1) == ["k"]
    assert batch_keys("k", 3) == ["k.0", "k.1", "k.2"]
    with pytest.raises(ValueError):
        batch_keys("k" * 254, 3)


# Settings ------------------------------------------------------------------

def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"HOOKBUS_URL": "http://env:1/", "HOOKBUS_TOKEN": "t-env", "HOOKBUS_APP": "a-env"}
    assert resolve({}) == resolve({}, url=None)
    assert resolve({}).url == "http://127.0.0.1:8080" and resolve({}).token is None
    config = resolve(env)
    assert (config.url, config.token, config.app) == ("http://env:1", "t-env", "a-env")
    config = resolve(env, url="https://flag", token="t-flag", app="a-flag")
    assert (config.url, config.token, config.app) == ("https://flag", "t-flag", "a-flag")
    assert "t-flag" not in repr(config)


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://x", "http://"])
def test_a_url_that_cannot_work_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_URL"):
        resolve({}, url=url)


def test_an_app_is_required_for_app_routes() -> None:
    assert require_app(resolve({}, app="a"), None) == "a"
    assert require_app(resolve({}, app="a"), "b") == "b"
    with pytest.raises(ConfigError, match="HOOKBUS_APP"):
        require_app(resolve({}), None)


# Calls and answers ---------------------------------------------------------

def test_calls_quote_path_parts_and_mark_what_may_be_repeated() -> None:
    call = api.publish("app/1", {"type": "message.received"}, "key-1")
    assert call.path == "/v1/apps/app%2F1/events"
    assert call.headers == {"Idempotency-Key": "key-1"} and call.retryable
    assert not api.create_webhook("a", {"target": "x"}).retryable
    assert api.list_events("a", since=NOW, limit=5).params == {
        "since": NOW.isoformat(), "limit": "5"}


def test_an_error_answer_raises_the_apis_error() -> None:
    body = (b'{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "target: bad",'
            b' "details": [{"field": "target", "reason": "bad"}]}}')
    with pytest.raises(HookbusError) as raised:
        api.answer(400, body, "req-1")
    assert raised.value.code == 400 and raised.value.message == "target: bad"
    assert raised.value.details[0].field == "target"
    assert str(raised.value) == "400 INVALID_ARGUMENT: target: bad (request req-1)"
    assert api.answer(204, b"") is None
    assert api.answer(202, b'{"id": "evt_1"}') == {"id": "evt_1"}


def test_an_answer_not_in_the_apis_shape_keeps_its_text() -> None:
    error = error_from_answer(502, b"<html>bad gateway</html>")
    assert (error.code, error.status, error.message) == (502, "HTTP_ERROR",
                                                         "<html>bad gateway</html>")


# Signatures ----------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdefghijklmn").decode()
BODY = b'{"id":"evt_1","type":"message.received","app_id":"a","data":{}}'


def _signed(keys: list, body: bytes = BODY, at: int | None = None) -> dict[str, str]:
    return signature_headers(keys, "evt_1", at if at is not None else int(time.time()), body)


def test_a_v1_delivery_verifies_and_returns_the_envelope() -> None:
    from services.common.secrets import signing_key

    headers = _signed([signing_key(SECRET)])
    assert Verifier(SECRET).verify(headers, BODY)["id"] == "evt_1"
    upper = {name.upper(): value for name, value in headers.items()}
    assert Verifier(SECRET).verify(list(upper.items()), BODY.decode())["id"] == "evt_1"


def test_a_plain_secret_is_its_utf8_bytes() -> None:
    headers = _signed([b"not-a-whsec-secret"])
    assert Verifier("not-a-whsec-secret").verify(headers, BODY)


def test_a_v1a_delivery_verifies_with_any_of_its_public_keys() -> None:
    new, old = generate_private_key(), generate_private_key()
    headers = _signed([private_key(new), private_key(old)])
    assert Verifier(public_key(old)).verify(headers, BODY)
    assert Verifier([SECRET, public_key(new)]).verify(headers, BODY)
    with pytest.raises(WebhookVerificationError):
        Verifier(public_key(generate_private_key())).verify(headers, BODY)


@pytest.mark.parametrize("tamper", [
    lambda h, b: (h, b + b" "),
    lambda h, b: (h | {"webhook-id": "evt_2"}, b),
    lambda h, b: (h | {"webhook-timestamp": str(int(time.time()) - 301)}, b),
    lambda h, b: (h | {"webhook-timestamp": "１２３"}, b),
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    lambda h, b: (h | {"webhook-signature": "v1,!!!notbase64 v2,abc"}, b),
])
def test_tampered_stale_or_malformed_deliveries_are_refused(tamper) -> None:
    from services.common.secrets import signing_key

    headers, body = tamper(_signed([signing_key(SECRET)]), BODY)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).verify(headers, body)


@given(st.binary(max_size=300), st.integers(0, 2**31))
def test_any_body_signed_at_any_time_verifies_then_and_not_tampered(body: bytes,
                                                                     at: int) -> None:
    from services.common.secrets import signing_key

    headers = _signed([signing_key(SECRET)], body, at)
    Verifier(SECRET).check(headers, body, now=at + 299)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).check(headers, body + b"x", now=at)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).check(headers, body, now=at + 301)


def test_a_verifier_refuses_bad_keys_and_hides_its_own() -> None:
    with pytest.raises(ValueError):
        Verifier([])
    with pytest.raises(ValueError):
        Verifier("whpk_" + base64.b64encode(b"short").decode())
    assert SECRET not in repr(Verifier(SECRET))


# Framework adapters (duck-typed: no framework is imported) -----------------

class _FlaskRequest:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers, self._body = headers, body

    def get_data(self, cache: bool = True) -> bytes:
        return self._body


class _StarletteRequest(_FlaskRequest):
    async def body(self) -> bytes:
        return self._body


def test_flask_and_starlette_adapters_verify_the_raw_body() -> None:
    from services.common.secrets import signing_key

    headers = _signed([signing_key(SECRET)])
    verifier = Verifier(SECRET)
    assert verify_flask(_FlaskRequest(headers, BODY), verifier)["id"] == "evt_1"
    assert asyncio.run(verify_starlette(_StarletteRequest(headers, BODY), verifier))["id"]
    with pytest.raises(WebhookVerificationError):
        verify_flask(_FlaskRequest(headers, BODY + b"x"), verifier)


def test_importing_the_sdk_imports_no_web_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, hookbus.receivers, hookbus.signatures, hookbus.client; "
            "print(sorted({'flask', 'fastapi', 'starlette'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
