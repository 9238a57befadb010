"""A hostile review of `v1a` (ed25519) signatures (commits 6b57c26, a7c6e1b,
d068474, 16aa0e1), the pure parts. Each test failed against the code as it was
reviewed; tests/integration/test_attack_v1a.py has the ones that need a broker."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import WebhookVerificationError

from schemas.api import EventIn
from schemas.webhooks import RetiredSecret, Webhook, webhook_decoder
from services.common.secrets import generate_private_key, generate_secret
from services.deliverer.signing import keys_of, signature_headers
from services.ingest.validation import event_problems

NOW = datetime.now(UTC)
# The identity point of edwards25519 (a small-order point): with it as the public
# key, R = identity and S = 0 is a "signature" of every message. libsodium (PyNaCl)
# refuses such keys; OpenSSL (the `cryptography` package) does not.
SMALL_ORDER_WHPK = "whpk_" + base64.b64encode(bytes([1]) + bytes(31)).decode()
FORGED = "v1a," + base64.b64encode(bytes([1]) + bytes(31) + bytes(32)).decode()
README = Path(__file__).resolve().parents[2] / "README.md"


def forged_headers() -> dict[str, str]:
    return {"webhook-id": "evt_forged", "webhook-timestamp": str(int(time.time())),
            "webhook-signature": FORGED}


def test_pynacl_itself_refuses_the_forgery() -> None:
    """The reference point: a battle-tested verifier refuses the small-order key."""
    body = b'{"type":"payment.succeeded","data":{"amount":1000000}}'
    signed = b"evt_forged.%d." % int(time.time()) + body
    with pytest.raises((BadSignatureError, ValueError)):
        VerifyKey(base64.b64decode(SMALL_ORDER_WHPK[5:])).verify(
            signed, base64.b64decode(FORGED[4:]))


def test_make_receiver_refuses_a_forgery_under_a_small_order_public_key() -> None:
    """`make receiver SECRET=whpk_…` (devtools/receiver.py) takes any 32 bytes as
    the public key and verifies with OpenSSL, which accepts (R=identity, S=0) for
    every message under the identity key: anyone can forge a delivery it calls
    valid. It should refuse small-order (and non-canonical) keys, or verify with
    libsodium (PyNaCl), which does."""
    from devtools.receiver import public_key, verify_v1a

    body = b'{"type":"payment.succeeded","data":{"amount":1000000}}'
    try:
        key = public_key(SMALL_ORDER_WHPK)
    except ValueError:
        return  # refusing the key is a fix too
    with pytest.raises(WebhookVerificationError):
        verify_v1a(key, body, forged_headers())


def readme_verify_v1a():  # noqa: ANN201
    """The README's `verify_v1a`, run as customers copy it."""
    snippet = re.search(r"Verifying a `v1a` delivery.*?```python\n(.*?)```",
                        README.read_text(), re.S)
    assert snippet is not None
    namespace: dict[str, object] = {}
    exec(snippet[1], namespace)  # the README's own code
    return namespace["verify_v1a"]


def test_readme_snippet_refuses_a_forgery_under_a_small_order_public_key() -> None:
    """The README's `verify_v1a`, which customers copy, has the same hole."""
    verify = readme_verify_v1a()
    body = b'{"type":"payment.succeeded","data":{"amount":1000000}}'
    assert not verify(SMALL_ORDER_WHPK, forged_headers(), body), (  # type: ignore[operator]
        "the README's verify_v1a accepted a forged signature under a small-order whpk_")


@pytest.mark.parametrize("changed", [
    {"webhook-timestamp": "soon"},
    {"webhook-timestamp": "\u00b2"},
])
def test_readme_snippet_answers_a_hostile_request_with_false(changed: dict[str, str]) -> None:
    """The README's `verify_v1a` promises a bool; a timestamp that is not a number
    (anyone can POST to a receiver) raises ValueError from `int()` outside its
    try, so a customer's handler that copied it answers 500."""
    from services.common.secrets import public_key as whpk_of

    verify = readme_verify_v1a()
    assert verify(whpk_of(generate_private_key()),  # type: ignore[operator]
                  forged_headers() | changed, b"{}") is False


@pytest.mark.parametrize("changed", [
    {"webhook-timestamp": "\u00b2"},            # '²'.isdigit() is True; int('²') raises
    {"webhook-signature": "v1a,\u00e9t\u00e9"},  # b64decode(str non-ASCII): ValueError
])
def test_make_receiver_answers_a_hostile_request_without_an_exception(
    changed: dict[str, str],
) -> None:
    """Anyone can POST to the receiver: a header that is not what the deliverer
    sends must be an invalid signature, not a ValueError (a 500 from aiohttp,
    and no 'signature: INVALID' line). The attempts cursor had the same isdigit
    bug (d82ac88)."""
    from devtools.receiver import public_key, verify_v1a
    from services.common.secrets import public_key as whpk_of

    key = public_key(whpk_of(generate_private_key()))
    with pytest.raises(WebhookVerificationError):
        verify_v1a(key, b"{}", forged_headers() | changed)


# -- a record with a naive retired expiry --------------------------------------------

def naive_expiry_record() -> Webhook:
    """A `webhooks` record as a producer writing the topic directly may hold it: a
    retired secret whose `expires_at` has no UTC offset. msgspec reads it (RFC 3339
    allows no offset in its parser) as a naive datetime."""
    record = msgspec.json.encode(Webhook(
        id="wh_1", app_id="app_1", target="https://example.com/h", triggers=["*"],
        secret=generate_private_key(), created_at=NOW, updated_at=NOW,
        signature_scheme="v1a",
        retired_secrets=[RetiredSecret(secret=generate_private_key(),
                                       expires_at=NOW + timedelta(hours=1),
                                       signature_scheme="v1a")]))
    doc = msgspec.json.decode(record)
    doc["retired_secrets"][0]["expires_at"] = "2999-01-01T00:00:00"
    return webhook_decoder.decode(msgspec.json.encode(doc))


def test_a_naive_retired_expiry_neither_breaks_signing_nor_reads() -> None:
    """`signing_keys` compares the naive expiry with an aware `now`: TypeError.
    The deliverer calls it inside an attempt, where only ValueError-like errors
    are caught, so the task's failure stops the deliverer (and again after each
    restart); ingest now calls it in every read (`public_keys`), so GET and the
    app's list are 500s. The record should be unreadable (tz=True) or its naive
    times taken as UTC."""
    # Fixed by making such a record unreadable (RetiredSecret.expires_at needs tz):
    # readers treat it as any undecodable record (WebhookLog.apply_unreadable).
    with pytest.raises(msgspec.ValidationError, match="timezone"):
        naive_expiry_record()


# -- unbounded retired keys -----------------------------------------------------------

MAX_OLD_KEYS = 10  # Svix's ExpiringSigningKeys::MAX_OLD_KEYS


def test_a_delivery_signs_with_a_bounded_number_of_keys() -> None:
    """Nothing bounds the retired keys a webhook signs with: each rotation (or
    scheme PATCH) within the overlap adds one, and every attempt parses each
    `whsk_` (a scalar multiplication to check its public half) and signs with it,
    on the deliverer's event loop; ingest derives every public key on each read.
    A tenant that rotates a few thousand times (the webhooks record allows ~3,800
    sealed v1a keys under 1 MB) makes each of its attempts block the deliverer
    for ~0.17 s and each read of it block ingest for ~0.09 s, for every tenant,
    with a 350 KB webhook-signature header. Svix refuses an 11th unexpired old
    key (MAX_OLD_KEYS = 10)."""
    retired = [RetiredSecret(secret=generate_private_key(), expires_at=NOW + timedelta(hours=1),
                             signature_scheme="v1a") for _ in range(200)]
    retired += [RetiredSecret(secret=generate_secret(), expires_at=NOW + timedelta(hours=1))
                for _ in range(200)]
    webhook = Webhook(id="wh_1", app_id="app_1", target="https://example.com/h",
                      triggers=["*"], secret=generate_private_key(), created_at=NOW,
                      updated_at=NOW, signature_scheme="v1a", retired_secrets=retired)
    headers = signature_headers(keys_of(webhook, NOW), "evt_1", int(NOW.timestamp()), b"{}")
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) <= 1 + MAX_OLD_KEYS, (
        f"one delivery carries {len(signatures)} signatures "
        f"({len(headers['webhook-signature'])} bytes of header)")


# -- the signed content ---------------------------------------------------------------

def test_an_event_id_holding_a_full_stop_is_refused() -> None:
    """Standard Webhooks ("Signature scheme"): the message id and timestamp must
    not be user controlled, "or at the very least not be allowed to include any
    `.`". The event id (a producer's choice, sent as webhook-id) may hold one, so
    `{id}.{timestamp}.{body}` no longer splits one way: the signature over id
    `evt_1.1900000000` at time t also signs id `evt_1`, timestamp 1900000000 and
    body `t.{body}` (a replay at that future time, and a receiver that records
    `evt_1` as seen before parsing the body drops the real evt_1)."""
    problems = event_problems(EventIn(type="message.received", id="evt_1.1900000000"), "app_1")
    assert [p.field for p in problems] == ["id"]
