"""Webhook signing secrets, as Standard Webhooks serializes them: `whsec_` for
HMAC (`v1`), `whsk_`/`whpk_` for ed25519 (`v1a`). Pure.

`v1` (contract §6): `whsec_<base64 of 24 random bytes>`; a given secret of
another form is used as its UTF-8 bytes.

`v1a`, as the Standard Webhooks spec (standard-webhooks/standard-webhooks,
`spec/standard-webhooks.md`, "Signature scheme": "Standard ed25519 key pair",
"base64 encoded, prefixed with `whsk_` for the secret key, and `whpk_` for the
public key") and Svix's implementation of it (svix-webhooks,
`server/svix-server/src/core/types/mod.rs` `EndpointSecret`,
`core/cryptography.rs` `AsymmetricKey`), define it:
- `whsk_<standard base64, padded, of 64 bytes>`: the ed25519 secret key as libsodium,
  Go's crypto/ed25519 and ed25519-compact (Svix's) hold it: the 32-byte
  seed followed by its 32-byte public key. A key from Svix works here and one
  made here works there.
- `whpk_<standard base64, padded, of the 32-byte public key>`.
- A given `whsk_` must decode to 64 bytes whose second half is the public key
  of the first (Svix checks the same by signing and verifying a test message);
  anything else is refused. A bare 32-byte seed is refused too, as Svix does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.webhooks import SignatureScheme

PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
_KEY_BYTES = 24
_SEED_BYTES = 32
_PRIVATE_KEY_BYTES = 64  # seed, then public key
PARSED_KEYS = 4096  # ed25519 keys kept parsed (an app signs with at most 11 at once)


class InvalidKey(ValueError):
    """A `whsk_` secret that is no ed25519 key. The message never holds key material."""


def generate_secret() -> str:
    """A new `v1` (HMAC) secret."""
    return PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def generate_private_key() -> str:
    """A new `v1a` (ed25519) secret key, `whsk_…`."""
    key = Ed25519PrivateKey.generate()
    return PRIVATE_KEY_PREFIX + base64.b64encode(
        key.private_bytes_raw() + key.public_key().public_bytes_raw()).decode()


def generate_for(scheme: SignatureScheme) -> str:
    """A new secret of `scheme`'s kind."""
    return generate_private_key() if scheme == "v1a" else generate_secret()


def signing_key(secret: str) -> bytes:
    """The HMAC key: the decoded part of a `whsec_` secret; any other secret is
    used as its UTF-8 bytes (contract §6)."""
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX):], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


@functools.lru_cache(maxsize=PARSED_KEYS)
def private_key(secret: str) -> Ed25519PrivateKey:
    """The ed25519 key of a `whsk_` secret; `InvalidKey` says why it is none.
    Remembered: the deliverer signs with the same keys at every attempt, and
    parsing one (a scalar multiplication, to check its public half) costs as
    much as signing a 1 KiB body (22 µs each, measured)."""
    if not secret.startswith(PRIVATE_KEY_PREFIX):
        raise InvalidKey(f"must start with {PRIVATE_KEY_PREFIX}")
    try:
        raw = base64.b64decode(secret[len(PRIVATE_KEY_PREFIX):], validate=True)
    except ValueError:  # binascii.Error, or a str that is not ASCII
        raise InvalidKey(f"the part after {PRIVATE_KEY_PREFIX} must be base64") from None
    if len(raw) != _PRIVATE_KEY_BYTES:
        raise InvalidKey(f"must hold {_PRIVATE_KEY_BYTES} bytes (an ed25519 seed, then its "
                         f"public key), not {len(raw)}")
    if base64.b64encode(raw).decode() != secret[len(PRIVATE_KEY_PREFIX):]:
        # Non-zero padding bits: the same key spelt another way (Svix refuses it).
        raise InvalidKey(f"the part after {PRIVATE_KEY_PREFIX} must be canonical base64")
    key = Ed25519PrivateKey.from_private_bytes(raw[:_SEED_BYTES])
    if key.public_key().public_bytes_raw() != raw[_SEED_BYTES:]:
        raise InvalidKey("its last 32 bytes are not the public key of its first 32")
    return key


def public_key(secret: str) -> str:
    """The `whpk_` public key of a valid `whsk_` secret."""
    raw = private_key(secret).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def public_keys_shown(signing_keys: list[tuple[SignatureScheme, str]]) -> list[str]:
    """The `whpk_` keys of the `v1a` keys among `signing_keys`, in order. A key
    that does not parse (only a record written around ingest can hold one) is
    left out rather than failing the read."""
    shown = []
    for scheme, secret in signing_keys:
        if scheme == "v1a":
            try:
                shown.append(public_key(secret))
            except InvalidKey:
                pass
    return shown


def secret_problem(secret: str, scheme: SignatureScheme) -> str | None:
    """Why `secret` cannot sign for `scheme`, or None when it can."""
    if secret.startswith(PUBLIC_KEY_PREFIX):
        return (f"a {PUBLIC_KEY_PREFIX} public key cannot sign; give the "
                f"{PRIVATE_KEY_PREFIX} secret key, or omit it to have one generated")
    if scheme == "v1":
        if secret.startswith(PRIVATE_KEY_PREFIX):
            return (f"a {PRIVATE_KEY_PREFIX} key signs only with signature_scheme v1a; "
                    f"v1 (HMAC) takes a {PREFIX} secret")
        return None
    if not secret.startswith(PRIVATE_KEY_PREFIX):
        return (f"signature_scheme v1a signs with an ed25519 key: give a "
                f"{PRIVATE_KEY_PREFIX} key, or omit secret to have one generated")
    try:
        private_key(secret)
    except InvalidKey as exc:
        return f"not a valid {PRIVATE_KEY_PREFIX} ed25519 key: {exc}"
    return None
