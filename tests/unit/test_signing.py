"""Signatures verify with the Standard Webhooks reference library and match
GitHub's `x-hub-signature-256` construction."""

from __future__ import annotations

import hashlib
import hmac
import time

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.secrets import PREFIX, generate_secret, signing_key
from services.deliverer.signing import signature_headers


JSON_OBJECTS = st.dictionaries(
    st.text(max_size=20),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                 lambda inner: st.lists(inner, max_size=4), max_leaves=10),
    max_size=8,
).map(msgspec.json.encode)


@given(JSON_OBJECTS, st.text(min_size=1, max_size=40).filter(str.isprintable))
def test_reference_library_verifies(body: bytes, message_id: str) -> None:
    secret = generate_secret()
    headers = signature_headers([signing_key(secret)], message_id, int(time.time()), body)
    Webhook(secret).verify(body, headers)  # raises when the signature is wrong


def test_every_valid_secret_signs_during_a_rotation() -> None:
    new, old = generate_secret(), generate_secret()
    body = b'{"id":"evt_1"}'
    headers = signature_headers([signing_key(new), signing_key(old)], "evt_1", int(time.time()),
                                body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    expected = hmac.new(signing_key(new), body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature-256"] == f"sha256={expected}"


def test_a_tampered_body_fails() -> None:
    secret = generate_secret()
    headers = signature_headers([signing_key(secret)], "evt_1", int(time.time()), b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"x":1}', headers)


def test_secret_forms() -> None:
    secret = generate_secret()
    assert secret.startswith(PREFIX) and len(signing_key(secret)) == 24
    assert signing_key("plain secret") == b"plain secret"
    assert signing_key("whsec_not*base64") == b"whsec_not*base64"
    assert generate_secret() != generate_secret()


def test_no_key_is_an_error() -> None:
    with pytest.raises(ValueError):
        signature_headers([], "evt_1", 0, b"")
