"""Signatures verify with the Standard Webhooks reference library (`v1`), with
PyNaCl (`v1a`: the reference library has no ed25519), and match GitHub's
`x-hub-signature-256` construction."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from schemas.webhooks import RetiredSecret
from schemas.webhooks import Webhook as StoredWebhook
from services.common.secrets import (
    PREFIX,
    InvalidKey,
    generate_private_key,
    generate_secret,
    private_key,
    public_key,
    signing_key,
)
from services.deliverer.signing import keys_of, signature_headers


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


# --- v1a: ed25519 (Standard Webhooks' asymmetric scheme) -----------------------------

# The spec's example `v1a` signature is Svix's known answer (svix-server worker.rs
# `test_asymmetric_key_signing`, e2e_endpoint.rs): this key, message and time sign to
# it, and the key's public half is this `whpk_`. ed25519 is deterministic (RFC 8032).
SVIX_KEY = ("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9l"
            "MicMFs6Kvg==")
SVIX_PUBLIC_KEY = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="
SVIX_SIGNATURE = ("v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mN"
                  "l8EM+m7TBAg==")


def test_v1a_known_answer_of_the_spec_and_svix() -> None:
    headers = signature_headers([private_key(SVIX_KEY)], "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                1614265330, b'{"test": 2432232314}')
    assert headers["webhook-signature"] == SVIX_SIGNATURE
    assert public_key(SVIX_KEY) == SVIX_PUBLIC_KEY


def nacl_verifies(whpk: str, headers: dict[str, str], body: bytes) -> int:
    """How many `v1a` signatures of `headers` the `whpk_` key verifies, with PyNaCl
    (libsodium): an ed25519 implementation independent of the one that signed."""
    verify_key = VerifyKey(base64.b64decode(whpk.removeprefix("whpk_"), validate=True))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    verified = 0
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1a":
            try:
                verify_key.verify(signed, base64.b64decode(signature, validate=True))
                verified += 1
            except BadSignatureError:
                pass
    return verified


NEW_ED, OLD_ED = generate_private_key(), generate_private_key()
NEW_HMAC, OLD_HMAC = generate_secret(), generate_secret()


def key(secret: str) -> bytes | Ed25519PrivateKey:
    return private_key(secret) if secret.startswith("whsk_") else signing_key(secret)


@pytest.mark.parametrize(("secrets", "versions", "x_hub_from"), [
    ([NEW_HMAC], ["v1"], NEW_HMAC),
    ([NEW_HMAC, OLD_HMAC], ["v1", "v1"], NEW_HMAC),
    ([NEW_ED], ["v1a"], None),  # x-hub-signature-256 is HMAC only
    ([NEW_ED, OLD_ED], ["v1a", "v1a"], None),  # a rotation: both sign, newest first
    ([NEW_ED, OLD_HMAC], ["v1a", "v1"], OLD_HMAC),  # after a change from v1 to v1a
    ([NEW_HMAC, OLD_ED], ["v1", "v1a"], NEW_HMAC),  # after a change from v1a to v1
])
def test_signature_header_by_keys(secrets: list[str], versions: list[str],
                                  x_hub_from: str | None) -> None:
    body = b'{"id":"evt_1","type":"message.received"}'
    headers = signature_headers([key(s) for s in secrets], "evt_1", int(time.time()), body)
    entries = headers["webhook-signature"].split(" ")
    assert [e.split(",", 1)[0] for e in entries] == versions
    for secret, entry in zip(secrets, entries):
        if secret.startswith("whsk_"):
            assert len(base64.b64decode(entry[4:], validate=True)) == 64
            assert nacl_verifies(public_key(secret), headers, body) == 1  # its own only
        else:
            Webhook(secret).verify(body, headers)
    if x_hub_from is None:
        assert "x-hub-signature-256" not in headers
    else:
        expected = hmac.new(signing_key(x_hub_from), body, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature-256"] == f"sha256={expected}"


@given(JSON_OBJECTS, st.text(min_size=1, max_size=40).filter(str.isprintable))
def test_pynacl_verifies_v1a(body: bytes, message_id: str) -> None:
    headers = signature_headers([private_key(NEW_ED)], message_id, int(time.time()), body)
    assert nacl_verifies(public_key(NEW_ED), headers, body) == 1
    assert nacl_verifies(public_key(OLD_ED), headers, body) == 0


def test_a_tampered_v1a_body_or_time_fails() -> None:
    headers = signature_headers([private_key(NEW_ED)], "evt_1", 1700000000, b"{}")
    assert nacl_verifies(public_key(NEW_ED), headers, b'{"x":1}') == 0
    assert nacl_verifies(public_key(NEW_ED), headers | {"webhook-timestamp": "1700000001"},
                         b"{}") == 0


AT = datetime(2026, 11, 22, tzinfo=UTC)


def webhook(scheme: str, secret: str, *retired: tuple[str, str, timedelta]) -> StoredWebhook:
    return StoredWebhook(
        id="wh_1", app_id="app_1", target="https://e.com", triggers=["*"], secret=secret,
        created_at=AT, updated_at=AT, signature_scheme=scheme,
        retired_secrets=[RetiredSecret(secret=s, signature_scheme=sch, expires_at=AT + left)
                         for sch, s, left in retired])


@pytest.mark.parametrize(("stored", "expected"), [
    (webhook("v1", NEW_HMAC), [("v1", NEW_HMAC)]),
    (webhook("v1a", NEW_ED), [("v1a", NEW_ED)]),
    (webhook("v1a", NEW_ED, ("v1a", OLD_ED, timedelta(hours=1))),
     [("v1a", NEW_ED), ("v1a", OLD_ED)]),
    (webhook("v1a", NEW_ED, ("v1a", OLD_ED, timedelta(0))), [("v1a", NEW_ED)]),  # expired
    (webhook("v1a", NEW_ED, ("v1", OLD_HMAC, timedelta(hours=1))),
     [("v1a", NEW_ED), ("v1", OLD_HMAC)]),
])
def test_keys_of_a_webhook(stored: StoredWebhook, expected: list[tuple[str, str]]) -> None:
    assert stored.signing_keys(AT) == expected
    keys = keys_of(stored, AT)
    assert len(keys) == len(expected)
    for k, (scheme, secret) in zip(keys, expected):
        if scheme == "v1a":
            assert isinstance(k, Ed25519PrivateKey)
            assert k.public_key().public_bytes_raw() == base64.b64decode(public_key(secret)[5:])
        else:
            assert k == signing_key(secret)


def test_a_v1a_key_is_parsed_once_not_at_every_attempt() -> None:
    stored = webhook("v1a", generate_private_key())
    first = keys_of(stored, AT)
    misses = private_key.cache_info().misses
    for _ in range(3):
        assert keys_of(stored, AT) == first
    assert private_key.cache_info().misses == misses


def test_a_v1a_secret_that_is_no_key_cannot_sign() -> None:
    with pytest.raises(InvalidKey):
        keys_of(webhook("v1a", NEW_HMAC), AT)


def test_make_receivers_v1a_check() -> None:
    from devtools.receiver import public_key as receiver_key
    from devtools.receiver import verify_v1a

    key = receiver_key(public_key(NEW_ED))
    headers = signature_headers([private_key(NEW_ED), private_key(OLD_ED)], "evt_1",
                                int(time.time()), b"{}")
    verify_v1a(key, b"{}", headers)
    verify_v1a(receiver_key(public_key(OLD_ED)), b"{}", headers)
    for body, changed in [(b"{ }", {}), (b"{}", {"webhook-timestamp": "1700000000"}),
                          (b"{}", {"webhook-signature": "v1a,!!!"})]:
        with pytest.raises(WebhookVerificationError):
            verify_v1a(key, body, headers | changed)
