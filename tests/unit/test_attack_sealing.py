"""A hostile review of services/common/sealing.py (pure). Each test fails
against the code as it was reviewed."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import msgspec
import pytest

from schemas.webhooks import ClientCredentials, Webhook
from services.common.sealing import (
    KeyConfigError,
    SealingError,
    SecretKeys,
    new_key_entry,
    open_webhook,
    seal_webhook,
)

KEYS = SecretKeys.parse(new_key_entry("k1"))
AT = datetime(2026, 11, 23, tzinfo=UTC)


def webhook() -> Webhook:
    return Webhook(
        id="wh_1", app_id="app_1", target="https://customer.example/hook", triggers=["*"],
        secret="whsec_c2VjcmV0LW9uZQ==", created_at=AT, updated_at=AT,
        client_credentials=ClientCredentials(client_id="id", client_secret="client-secret",
                                             endpoint="https://customer.example/token"))


def test_a_sealed_client_secret_does_not_open_once_its_token_endpoint_is_changed() -> None:
    """The client secret is sealed with [webhook id, "client_secret"] alone as
    associated data, so a record writer without any key can point the sealed
    secret at its own token endpoint and the deliverer posts it there in clear
    (tests/integration/test_attack_sealing.py shows it end to end). Binding the
    endpoint (and client id, and the target the token is presented to) into
    the associated data makes that copy fail to open."""
    sealed = seal_webhook(KEYS, webhook())
    assert sealed.client_credentials is not None
    moved = msgspec.structs.replace(sealed, client_credentials=msgspec.structs.replace(
        sealed.client_credentials, endpoint="https://attacker.example/token"))
    with pytest.raises(SealingError):
        open_webhook(KEYS, moved)


@pytest.mark.parametrize("entry", [
    f"{os.urandom(32).hex()}:k1",  # id and key the wrong way round (a hex key)
    f"{os.urandom(32).hex()}:",    # a key with a colon after it
])
def test_a_malformed_keys_setting_never_repeats_key_material(entry: str) -> None:
    """KeyConfigError promises 'the message never holds key material', and its
    message becomes the one line a service logs when it refuses to start. A key
    whose characters fit the key-id pattern (hex from `openssl rand -hex 32`,
    base64url without padding), written before the colon, is echoed back as
    the 'key id'."""
    material = entry.partition(":")[0]
    with pytest.raises(KeyConfigError) as refused:
        SecretKeys.parse(entry)
    assert material[:16] not in str(refused.value), str(refused.value)
