"""Signature headers of a delivery (contract §7): Standard Webhooks, plus
GitHub's `x-hub-signature-256` for receivers that already verify that."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def signature_headers(
    keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Headers signing `body`; `keys` holds the valid keys, newest first."""
    if not keys:
        raise ValueError("at least one signing key is required")
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "x-hub-signature-256": "sha256=" + hmac.new(keys[0], body, hashlib.sha256).hexdigest(),
    }
