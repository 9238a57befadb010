"""Signature headers of a delivery (contract §7): Standard Webhooks, plus
GitHub's `x-hub-signature-256` for receivers that already verify that. Pure.

`webhook-signature` holds one signature per valid key, newest first, space
separated (a rotation's zero-downtime overlap), each over the same content
`{webhook-id}.{webhook-timestamp}.{body}` (spec/standard-webhooks.md,
"Signature scheme" and "Webhook headers"):
- `v1,<base64 HMAC-SHA256(key, content)>` for an HMAC key (`bytes`);
- `v1a,<base64 of the 64-byte ed25519 signature of content>` for an ed25519 key
  (RFC 8032, deterministic: the spec's and Svix's known answer is in the tests).
Standard base64 with padding, as both the spec's examples and Svix write it.
The two kinds may stand side by side: the spec's own example header does, and a
change of signature scheme keeps the old key signing through the overlap.

`x-hub-signature-256` is GitHub's HMAC over the body alone, so it exists only
for HMAC keys: it is made with the newest HMAC key among the valid ones, and is
absent when there is none (a `v1a` webhook, outside the overlap after a change
from `v1`). An ed25519 receiver has nothing to verify it with, and an HMAC made
with a `whsk_` key would be a signature no one can check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.webhooks import Webhook
from services.common.secrets import private_key, signing_key

SigningKey = bytes | Ed25519PrivateKey
"""An HMAC key (`v1`) or an ed25519 key (`v1a`)."""


def keys_of(webhook: Webhook, now: datetime) -> list[SigningKey]:
    """The keys that sign `webhook`'s deliveries at `now`, newest first.
    Raises `InvalidKey` when a `v1a` secret is no ed25519 key (ingest refuses
    those; only a record written around it can hold one)."""
    return [private_key(secret) if scheme == "v1a" else signing_key(secret)
            for scheme, secret in webhook.signing_keys(now)]


def signature_headers(
    keys: Sequence[SigningKey], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Headers signing `body`; `keys` holds the valid keys, newest first."""
    if not keys:
        raise ValueError("at least one signing key is required")
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(_signature(key, signed) for key in keys),
    }
    newest_hmac = next((key for key in keys if isinstance(key, bytes)), None)
    if newest_hmac is not None:
        headers["x-hub-signature-256"] = (
            "sha256=" + hmac.new(newest_hmac, body, hashlib.sha256).hexdigest())
    return headers


def _signature(key: SigningKey, signed: bytes) -> str:
    if isinstance(key, bytes):
        return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return "v1a," + base64.b64encode(key.sign(signed)).decode()
