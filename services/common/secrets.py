"""Webhook signing secrets: `whsec_<base64>` as Standard Webhooks defines them."""

from __future__ import annotations

import base64
import binascii
import secrets

PREFIX = "whsec_"
_KEY_BYTES = 24


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key: the decoded part of a `whsec_` secret; any other secret is
    used as its UTF-8 bytes (contract §6)."""
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX):], validate=True)
        except binascii.Error:
            pass
    return secret.encode()
