"""Secrets sealed at rest (contract §9): what the `webhooks` topic holds of a
signing secret, a retired secret or an OAuth client secret is never the secret
but `sealed:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, AES-256-GCM under a
key of `HOOKBUS_SECRET_KEYS`.

- The associated data binds a ciphertext to its record and field
  (`["hookbus.webhook", <webhook id>, <field>]`): copied into another webhook's
  record, or from `client_secret` into `secret`, it no longer opens.
- Several keys are accepted for opening; the first one seals. Rotation: put a
  new key first, keep the old ones behind it, re-seal (`make reseal`), then drop
  the old ones.
- A value that does not start with `sealed:` is a secret written before sealing
  existed; it is read as it is, and `needs_reseal` says so.

Pure: no I/O. `WebhooksView` seals at the moment it writes a record and opens at
the moment it reads one, so everything else holds plain secrets in memory only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.webhooks import ClientCredentials, Webhook
from services.common.config import ConfigError, Env

PREFIX = "sealed:"
_VERSION = "v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SEALED = re.compile(r"^sealed:v1:([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9+/=]+)$")
PLAINTEXT = None  # the key id `key_ids` reports for a secret stored unsealed


class SealingError(ValueError):
    """A sealed value cannot be opened: its key is not configured, or it was
    altered or moved. The message names the key id, never key or secret."""


class KeyConfigError(ValueError):
    """`HOOKBUS_SECRET_KEYS` is malformed; the message never holds key material."""


@dataclass(frozen=True)
class SecretKeys:
    """The keys of `HOOKBUS_SECRET_KEYS`, the sealing one first."""

    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyConfigError("at least one key is required")

    @property
    def primary(self) -> str:
        """The id of the key that seals."""
        return self.keys[0][0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    def __repr__(self) -> str:
        return f"SecretKeys(ids={self.ids!r})"

    @classmethod
    def parse(cls, text: str) -> SecretKeys:
        """`id:base64key,id:base64key,…` (each key 32 random bytes, base64)."""
        keys: list[tuple[str, bytes]] = []
        for position, item in enumerate(text.split(","), start=1):
            item = item.strip()
            if not item:
                continue
            key_id, colon, encoded = item.partition(":")
            if not colon or not _KEY_ID.match(key_id):
                raise KeyConfigError(
                    f"entry {position}: expected id:base64key, with an id of 1 to 64 "
                    "letters, digits, '.', '_' or '-'")
            if key_id in (k for k, _ in keys):
                raise KeyConfigError(f"key id {key_id!r} appears twice")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise KeyConfigError(f"key {key_id!r}: not base64") from None
            if len(key) != _KEY_BYTES:
                raise KeyConfigError(
                    f"key {key_id!r}: must be {_KEY_BYTES} bytes, not {len(key)} "
                    "(e.g. `openssl rand -base64 32`)")
            keys.append((key_id, key))
        if not keys:
            raise KeyConfigError("no keys given (id:base64key,…)")
        return cls(tuple(keys))

    def _key(self, key_id: str) -> bytes | None:
        for known, key in self.keys:
            if known == key_id:
                return key
        return None


def new_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry for `HOOKBUS_SECRET_KEYS`."""
    if not _KEY_ID.match(key_id):
        raise KeyConfigError(f"not a key id: {key_id!r}")
    return f"{key_id}:{base64.b64encode(os.urandom(_KEY_BYTES)).decode()}"


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def _aad(webhook_id: str, field_name: str) -> bytes:
    # JSON, so that no two (id, field) pairs give the same bytes whatever the id holds.
    return msgspec.json.encode(["hookbus.webhook", webhook_id, field_name])


def seal(keys: SecretKeys, plain: str, webhook_id: str, field_name: str, *,
         keep_sealed: bool = False) -> str:
    """`plain` sealed under the primary key. `keep_sealed`: a value that is
    sealed already (one this instance could not open) is kept as it was read."""
    if keep_sealed and is_sealed(plain):
        return plain
    key_id, key = keys.keys[0]
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plain.encode(), _aad(webhook_id, field_name))
    return f"{PREFIX}{_VERSION}:{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def key_id_of(value: str) -> str | None:
    """The key id a sealed value names (None: plaintext). Raises `SealingError`
    for a value that claims to be sealed but is malformed."""
    if not is_sealed(value):
        return PLAINTEXT
    match = _SEALED.match(value)
    if match is None:
        raise SealingError("malformed sealed value")
    return match[1]


def open_sealed(keys: SecretKeys, value: str, webhook_id: str, field_name: str) -> str:
    """The secret in `value` (a plaintext value is returned as it is)."""
    key_id = key_id_of(value)
    if key_id is PLAINTEXT:
        return value
    match = _SEALED.match(value)
    assert match is not None
    key = keys._key(key_id)
    if key is None:
        raise SealingError(f"sealed under key {key_id!r}, which is not in HOOKBUS_SECRET_KEYS")
    try:
        blob = base64.b64decode(match[2], validate=True)
    except binascii.Error:
        raise SealingError(f"sealed under key {key_id!r}: not base64") from None
    if len(blob) < _NONCE_BYTES + 16:
        raise SealingError(f"sealed under key {key_id!r}: too short")
    try:
        plain = AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                    _aad(webhook_id, field_name))
    except InvalidTag:
        raise SealingError(
            f"sealed under key {key_id!r} but does not open: altered, or moved from "
            "another record or field") from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise SealingError(f"sealed under key {key_id!r}: not UTF-8") from None


# Which fields hold secrets, and the associated-data name of each. Retired
# secrets share `secret`'s name: they are the same webhook's signing keys.
_SIGNING = "secret"
_CLIENT = "client_secret"


def _secret_values(webhook: Webhook) -> Iterator[tuple[str, str]]:
    yield _SIGNING, webhook.secret
    for retired in webhook.retired_secrets:
        yield _SIGNING, retired.secret
    if webhook.client_credentials is not None:
        yield _CLIENT, webhook.client_credentials.client_secret


def _map_secrets(webhook: Webhook, change) -> Webhook:  # type: ignore[no-untyped-def]
    retired = [msgspec.structs.replace(r, secret=change(_SIGNING, r.secret))
               for r in webhook.retired_secrets]
    creds: ClientCredentials | None = webhook.client_credentials
    if creds is not None:
        creds = msgspec.structs.replace(creds, client_secret=change(_CLIENT, creds.client_secret))
    return msgspec.structs.replace(
        webhook, secret=change(_SIGNING, webhook.secret),
        retired_secrets=retired, client_credentials=creds)


def seal_webhook(keys: SecretKeys, webhook: Webhook, *, keep_sealed: bool = False) -> Webhook:
    """`webhook` as it is written to Kafka: every secret sealed under the primary
    key (`keep_sealed`: but those still sealed as read, which could not be opened)."""
    return _map_secrets(webhook, lambda name, value: seal(keys, value, webhook.id, name,
                                                          keep_sealed=keep_sealed))


def open_webhook(keys: SecretKeys, webhook: Webhook) -> Webhook:
    """`webhook` as read from Kafka with every secret opened. Raises
    `SealingError` when any one cannot be opened."""
    return _map_secrets(webhook, lambda name, value: open_sealed(keys, value, webhook.id, name))


def key_ids(webhook: Webhook) -> frozenset[str | None]:
    """The ids of the keys a record's secrets are sealed under (None: plaintext).
    Raises `SealingError` for a malformed sealed value."""
    return frozenset(key_id_of(value) for _, value in _secret_values(webhook))


def needs_reseal(keys: SecretKeys, sealed_under: frozenset[str | None]) -> bool:
    """Whether a record sealed under `sealed_under` must be re-sealed: it holds a
    plaintext secret or one sealed under a key other than the primary."""
    return bool(sealed_under - {keys.primary})


__all__ = [
    "KeyConfigError", "PLAINTEXT", "SealingError", "SecretKeys",
    "is_sealed", "key_id_of", "key_ids", "keys_from_env", "needs_reseal", "new_key_entry", "open_sealed",
    "open_webhook", "seal", "seal_webhook",
]


def keys_from_env(env: Env) -> SecretKeys:
    """`HOOKBUS_SECRET_KEYS`, required by every service that reads or writes secrets."""
    text = env.optional("SECRET_KEYS")
    if text is None:
        raise ConfigError(
            "HOOKBUS_SECRET_KEYS is required: the keys that seal webhook secrets at rest, "
            "id:base64key,… the first one sealing (make one with `make secret-key`)")
    try:
        return SecretKeys.parse(text)
    except KeyConfigError as exc:
        raise ConfigError(f"HOOKBUS_SECRET_KEYS: {exc}") from None
