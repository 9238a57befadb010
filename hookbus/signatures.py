"""Verifying a delivery's signature (contract §7, Standard Webhooks), for the
receivers of Hookbus's webhooks. Pure: no web framework, no I/O.

    verifier = Verifier("whsec_…")          # or "whpk_…" for a v1a webhook
    payload = verifier.verify(headers, body)  # the envelope, or WebhookVerificationError

- `whsec_<base64>`: a `v1` (HMAC-SHA256) secret; any other string that is not a
  `whpk_` key is used as its UTF-8 bytes, as Hookbus signs with it.
- `whpk_<base64 of 32 bytes>`: a `v1a` webhook's public key (ed25519), checked
  with libsodium (PyNaCl), which refuses small-order keys (OpenSSL's ed25519
  accepts a forged signature under one).
- Several keys (a rotation, a change of scheme): a delivery is valid when any
  of them made one of its signatures.

The timestamp must be within `tolerance` seconds of now (300, as the
`standardwebhooks` library allows): an old delivery replayed by someone else is
refused. Comparisons of HMACs are constant-time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

TOLERANCE = 300
SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
_MAX_TIMESTAMP_DIGITS = 15
_decoder = msgspec.json.Decoder()


class WebhookVerificationError(Exception):
    """The delivery is not signed by a key of the verifier (or is stale, or its
    headers are missing): answer it with a 400 (`status`) and ignore it."""

    status = 400


def hmac_key(secret: str) -> bytes:
    """The HMAC key of a `v1` secret (the decoded part of `whsec_…`, else its bytes)."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def public_key(whpk: str) -> VerifyKey:
    """The ed25519 key of a `whpk_` public key; ValueError when it is none."""
    try:
        raw = base64.b64decode(whpk[len(PUBLIC_KEY_PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError("a whpk_ key must be base64") from exc
    if len(raw) != 32:
        raise ValueError(f"a whpk_ key holds 32 bytes, not {len(raw)}")
    return VerifyKey(raw)


class Verifier:
    def __init__(self, keys: str | Sequence[str], *, tolerance: float = TOLERANCE) -> None:
        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys or any(not k for k in keys):
            raise ValueError("a verifier needs at least one non-empty secret or public key")
        self._hmac = [hmac_key(k) for k in keys if not k.startswith(PUBLIC_KEY_PREFIX)]
        self._ed25519 = [public_key(k) for k in keys if k.startswith(PUBLIC_KEY_PREFIX)]
        self.tolerance = tolerance

    def __repr__(self) -> str:  # never the secrets
        return f"Verifier(v1 keys={len(self._hmac)}, v1a keys={len(self._ed25519)})"

    def verify(self, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | str,
               *, now: float | None = None) -> dict[str, Any]:
        """The delivered JSON object if `headers` sign `body` (the raw bytes received)
        with one of the keys, at most `tolerance` seconds from `now`; else raises
        WebhookVerificationError."""
        self.check(headers, body, now=now)
        try:
            payload = _decoder.decode(_raw(body))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            # (msgspec raises UnicodeDecodeError for a string that is not UTF-8)
            raise WebhookVerificationError("the body is not JSON") from exc
        if not isinstance(payload, dict):
            raise WebhookVerificationError("the body is not a JSON object")
        return payload

    def check(self, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | str,
              *, now: float | None = None) -> None:
        """As `verify`, without decoding the body."""
        found = _lowercase(headers)
        raw = _raw(body)
        message_id = found.get("webhook-id")
        timestamp = found.get("webhook-timestamp")
        signatures = found.get("webhook-signature")
        if not message_id or not timestamp or not signatures:
            raise WebhookVerificationError("missing webhook-id, webhook-timestamp or "
                                           "webhook-signature header")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise WebhookVerificationError("webhook-timestamp is not a number of seconds")
        at = time.time() if now is None else now
        # More digits than a float holds exactly are far from any now (and int()
        # of thousands of digits raises ValueError, a float of them OverflowError).
        if len(timestamp.lstrip("0")) > _MAX_TIMESTAMP_DIGITS or \
                abs(at - int(timestamp)) > self.tolerance:
            raise WebhookVerificationError("webhook-timestamp is too far from now")
        signed = f"{message_id}.{timestamp}.".encode() + raw
        for entry in signatures.split(" "):
            version, _, encoded = entry.partition(",")
            try:
                signature = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
            if version == "v1" and self._hmac_matches(signed, signature):
                return
            if version == "v1a" and self._ed25519_matches(signed, signature):
                return
        raise WebhookVerificationError("no signature matches")

    def _hmac_matches(self, signed: bytes, signature: bytes) -> bool:
        return any(hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), signature)
                   for key in self._hmac)

    def _ed25519_matches(self, signed: bytes, signature: bytes) -> bool:
        for key in self._ed25519:
            try:
                key.verify(signed, signature)
                return True
            except (BadSignatureError, ValueError):
                continue
        return False


def _raw(body: bytes | str) -> bytes:
    """The bytes a body was received as (a `str` as UTF-8)."""
    if not isinstance(body, str):
        return bytes(body)
    try:
        return body.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: no bytes were received as it
        raise WebhookVerificationError("the body is not UTF-8 text") from exc


def _lowercase(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names lower-cased; works for dicts, aiohttp/Starlette/Werkzeug headers
    (mappings with `items()`) and lists of pairs. The first of a repeated name wins."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        found.setdefault(name.lower(), value)
    return found
