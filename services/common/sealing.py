"""Secrets sealed at rest (contract §9): what the `webhooks` topic holds of a
signing secret, a retired secret or an OAuth client secret is never the secret
but `sealed:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, AES-256-GCM under a
key of `HOOKBUS_SECRET_KEYS`.

- The associated data binds a ciphertext to its record (id, app, target) and
  to its field and what that field's secret is used with (see `_aad` below):
  copied into another record or field, or left in a record whose target or
  token endpoint was changed, it no longer opens.
- Several keys are accepted for opening; the first one seals. Rotation: add
  the new key behind the old one on every replica, then move it first, re-seal
  (`make reseal`), then drop the old one. (A replica sealing under a key another
  does not hold yet writes records that one cannot open.)
- A value that does not start with `sealed:` is a secret written before sealing
  existed; it is read as it is, and `needs_reseal` says so. Custom headers'
  values are sealed too: receivers' credentials live there.

Pure: no I/O. `WebhooksView` seals at the moment it writes a record and opens at
the moment it reads one, so everything else holds plain secrets in memory only.
"""

from __future__ import annotations

import base64
import dataclasses
import binascii
import os
import re
from collections.abc import Callable, Iterator
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
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # (fullmatch)
_SEALED = re.compile(r"sealed:v1:([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9+/=]+)")  # (fullmatch)
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
    # HOOKBUS_PLAINTEXT_SECRETS=refuse: a record holding a value in plain text
    # does not open (for once `make reseal` has sealed the records from before).
    refuse_plaintext: bool = False

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
        return f"SecretKeys(ids={self.ids!r}, refuse_plaintext={self.refuse_plaintext})"

    @classmethod
    def parse(cls, text: str) -> SecretKeys:
        """`id:base64key,id:base64key,…` (each key 32 random bytes, base64)."""
        keys: list[tuple[str, bytes]] = []
        for position, item in enumerate(text.split(","), start=1):
            item = item.strip()
            if not item:
                continue
            key_id, colon, encoded = item.partition(":")
            if not colon or not _KEY_ID.fullmatch(key_id):
                raise KeyConfigError(
                    f"entry {position}: expected id:base64key, with an id of 1 to 64 "
                    "letters, digits, '.', '_' or '-'")
            # Errors name the entry by its position only: a key pasted where its id
            # belongs must not be repeated in a log.
            if key_id in (k for k, _ in keys):
                raise KeyConfigError(f"entry {position}: its id is the id of an earlier entry")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise KeyConfigError(f"entry {position}: the key is not base64") from None
            if len(key) != _KEY_BYTES:
                raise KeyConfigError(
                    f"entry {position}: the key must be {_KEY_BYTES} bytes, not {len(key)} "
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
    if not _KEY_ID.fullmatch(key_id):
        raise KeyConfigError(f"not a key id: {key_id!r}")
    return f"{key_id}:{base64.b64encode(os.urandom(_KEY_BYTES)).decode()}"


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal(keys: SecretKeys, plain: str, aad: bytes) -> str:
    """`plain` sealed under the primary key, bound to `aad`."""
    key_id, key = keys.keys[0]
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plain.encode(), aad)
    return f"{PREFIX}{_VERSION}:{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def key_id_of(value: str) -> str | None:
    """The key id a sealed value names (None: plaintext). Raises `SealingError`
    for a value that claims to be sealed but is malformed."""
    if not is_sealed(value):
        return PLAINTEXT
    match = _SEALED.fullmatch(value)
    if match is None:
        raise SealingError("malformed sealed value")
    return match[1]


def open_sealed(keys: SecretKeys, value: str, aad: bytes) -> str:
    """The secret in `value`, which must have been sealed with `aad` (a
    plaintext value is returned as it is)."""
    key_id = key_id_of(value)
    if key_id is PLAINTEXT:
        return value
    match = _SEALED.fullmatch(value)
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
        plain = AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise SealingError(
            f"sealed under key {key_id!r} but does not open: altered, or moved from another "
            "record or field, or the record's app, target or token endpoint changed") from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise SealingError(f"sealed under key {key_id!r}: not UTF-8") from None


# -- a webhook record's secrets -------------------------------------------------
# Each sealed value is bound (as associated data) to its webhook's id, app and
# target, and to what decides where that secret goes or how it is used: a
# signing secret to its scheme (a retired one also to its expiry), an OAuth
# client secret to its client id, token endpoint and request type, a custom
# header's value to its name. A writer of the topic who changes any of these
# (points the target or the token endpoint at itself, moves a value to another
# record or field) gets a record whose secrets do not open: nothing is sent.
# JSON, so that no two contexts give the same bytes whatever the strings hold.

def _aad(webhook: Webhook, *what: object) -> bytes:
    return msgspec.json.encode(["hookbus.webhook", webhook.id, webhook.app_id, webhook.target,
                                *what])


def _map_secrets(webhook: Webhook, change: Callable[[str, bytes], str]) -> Webhook:
    """`webhook` with `change(value, aad)` in place of each secret value."""
    retired = [msgspec.structs.replace(r, secret=change(
        r.secret, _aad(webhook, "retired", r.signature_scheme, r.expires_at)))
        for r in webhook.retired_secrets]
    creds: ClientCredentials | None = webhook.client_credentials
    if creds is not None:
        creds = msgspec.structs.replace(creds, client_secret=change(creds.client_secret, _aad(
            webhook, "client_secret", creds.client_id, creds.endpoint, creds.token_request_type)))
    headers = {name: change(value, _aad(webhook, "header", name))
               for name, value in webhook.headers.items()}
    return msgspec.structs.replace(
        webhook, secret=change(webhook.secret, _aad(webhook, "secret", webhook.signature_scheme)),
        retired_secrets=retired, client_credentials=creds, headers=headers)


def _values(webhook: Webhook) -> Iterator[str]:
    yield webhook.secret
    yield from (r.secret for r in webhook.retired_secrets)
    if webhook.client_credentials is not None:
        yield webhook.client_credentials.client_secret
    yield from webhook.headers.values()


def seal_webhook(keys: SecretKeys, webhook: Webhook) -> Webhook:
    """`webhook` as it is written to Kafka: every secret, and every custom
    header's value (receivers' credentials live there), sealed under the
    primary key."""
    return _map_secrets(webhook, lambda value, aad: seal(keys, value, aad))


def open_webhook(keys: SecretKeys, webhook: Webhook) -> Webhook:
    """`webhook` as read from Kafka with every sealed value opened. Raises
    `SealingError` when any one cannot be opened, or is in plain text while
    `keys.refuse_plaintext`."""
    if keys.refuse_plaintext and PLAINTEXT in key_ids(webhook):
        raise SealingError("holds a value in plain text, and HOOKBUS_PLAINTEXT_SECRETS=refuse")
    return _map_secrets(webhook, lambda value, aad: open_sealed(keys, value, aad))


def key_ids(webhook: Webhook) -> frozenset[str | None]:
    """The ids of the keys a record's values are sealed under (None: one in
    plain text). Raises `SealingError` for a malformed sealed value."""
    return frozenset(key_id_of(value) for value in _values(webhook))


def needs_reseal(keys: SecretKeys, sealed_under: frozenset[str | None]) -> bool:
    """Whether a record sealed under `sealed_under` must be re-sealed: it holds a
    plaintext secret or one sealed under a key other than the primary."""
    return bool(sealed_under - {keys.primary})


__all__ = [
    "KeyConfigError", "PLAINTEXT", "SealingError", "SecretKeys",
    "is_sealed", "key_id_of", "key_ids", "keys_from_env", "needs_reseal", "new_key_entry",
    "open_sealed", "open_webhook", "seal", "seal_webhook",
]


def keys_from_env(env: Env) -> SecretKeys:
    """`HOOKBUS_SECRET_KEYS`, required by every service that reads or writes secrets."""
    text = env.optional("SECRET_KEYS")
    if text is None:
        raise ConfigError(
            "HOOKBUS_SECRET_KEYS is required: the keys that seal webhook secrets at rest, "
            "id:base64key,… the first one sealing (make one with `make secret-key`)")
    try:
        keys = SecretKeys.parse(text)
    except KeyConfigError as exc:
        raise ConfigError(f"HOOKBUS_SECRET_KEYS: {exc}") from None
    plaintext = env.str("PLAINTEXT_SECRETS", "accept").strip().lower()
    if plaintext not in ("accept", "refuse"):
        raise ConfigError("HOOKBUS_PLAINTEXT_SECRETS: accept (records from before sealing "
                          f"load) or refuse (once make reseal is done), not {plaintext!r}")
    return dataclasses.replace(keys, refuse_plaintext=plaintext == "refuse")
