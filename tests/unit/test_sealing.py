"""Secrets sealed at rest: services/common/sealing.py (pure)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.webhooks import ClientCredentials, RetiredSecret, Webhook, webhook_decoder
from services.common.config import ConfigError, Env
from services.common.sealing import (
    KeyConfigError,
    SealingError,
    SecretKeys,
    is_sealed,
    key_id_of,
    key_ids,
    keys_from_env,
    needs_reseal,
    new_key_entry,
    open_sealed,
    open_webhook,
    seal,
    seal_webhook,
)

K1 = new_key_entry("k1")
K2 = new_key_entry("k2")
OLD = SecretKeys.parse(K1)
BOTH = SecretKeys.parse(f"{K2},{K1}")
NEW = SecretKeys.parse(K2)
AT = datetime(2026, 11, 23, tzinfo=UTC)


def webhook(webhook_id: str = "wh_1", **changes: object) -> Webhook:
    fields: dict[str, object] = dict(
        id=webhook_id, app_id="app_1", target="https://example.com/h", triggers=["*"],
        secret="whsec_c2VjcmV0LW9uZQ==", created_at=AT, updated_at=AT,
        retired_secrets=[RetiredSecret(secret="old-secret", expires_at=AT + timedelta(hours=1))],
        client_credentials=ClientCredentials(client_id="id", client_secret="client-secret",
                                             endpoint="https://example.com/token"),
    )
    return Webhook(**(fields | changes))  # type: ignore[arg-type]


@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_what_is_sealed_opens_to_the_same_secret_and_never_shows_it(plain: str, wid: str) -> None:
    sealed = seal(BOTH, plain, wid, "secret")
    assert is_sealed(sealed) and key_id_of(sealed) == "k2"
    assert open_sealed(BOTH, sealed, wid, "secret") == plain
    if len(plain) >= 4:
        assert plain not in sealed.removeprefix("sealed:v1:k2:")


def test_each_sealing_differs_so_equal_secrets_do_not_show_as_equal() -> None:
    assert seal(OLD, "same", "wh_1", "secret") != seal(OLD, "same", "wh_1", "secret")


@pytest.mark.parametrize("moved_to", [("wh_2", "secret"), ("wh_1", "client_secret")])
def test_a_sealed_value_moved_to_another_record_or_field_does_not_open(
        moved_to: tuple[str, str]) -> None:
    sealed = seal(OLD, "the secret", "wh_1", "secret")
    with pytest.raises(SealingError, match="altered, or moved"):
        open_sealed(OLD, sealed, *moved_to)


def test_an_altered_value_does_not_open() -> None:
    sealed = seal(OLD, "the secret", "wh_1", "secret")
    prefix, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(SealingError):
        open_sealed(OLD, f"{prefix}:{base64.b64encode(bytes(raw)).decode()}", "wh_1", "secret")


@pytest.mark.parametrize("value", ["sealed:v1:k1:", "sealed:v1:k1:!!!", "sealed:v2:k1:AAAA",
                                   "sealed:v1:k1:AAAA", "sealed:"])
def test_malformed_sealed_values_are_refused_not_taken_for_secrets(value: str) -> None:
    with pytest.raises(SealingError):
        open_sealed(OLD, value, "wh_1", "secret")


def test_a_value_sealed_under_a_key_not_configured_names_the_key_and_nothing_else() -> None:
    sealed = seal(OLD, "the secret", "wh_1", "secret")
    with pytest.raises(SealingError) as raised:
        open_sealed(NEW, sealed, "wh_1", "secret")
    assert "'k1'" in str(raised.value) and "the secret" not in str(raised.value)


def test_rotation_old_key_opens_new_key_seals() -> None:
    under_old = seal(OLD, "s", "wh_1", "secret")
    assert open_sealed(BOTH, under_old, "wh_1", "secret") == "s"
    assert key_id_of(seal(BOTH, "s", "wh_1", "secret")) == "k2"


def test_a_plaintext_secret_written_before_sealing_reads_as_it_is() -> None:
    assert open_sealed(OLD, "whsec_legacy", "wh_1", "secret") == "whsec_legacy"
    assert key_id_of("whsec_legacy") is None


def test_keep_sealed_keeps_what_could_not_be_opened_and_seals_the_rest() -> None:
    unopened = seal(OLD, "s", "wh_1", "secret")
    assert seal(NEW, unopened, "wh_1", "secret", keep_sealed=True) == unopened
    resealed = seal(NEW, unopened, "wh_1", "secret")  # a new secret that looks sealed
    assert open_sealed(NEW, resealed, "wh_1", "secret") == unopened


def test_a_webhook_record_holds_no_secret_and_reads_back_whole() -> None:
    plain = webhook()
    record = msgspec.json.encode(seal_webhook(BOTH, plain))
    for secret in ("c2VjcmV0LW9uZQ", "old-secret", "client-secret"):
        assert secret.encode() not in record
    read = webhook_decoder.decode(record)
    assert key_ids(read) == frozenset({"k2"})
    assert open_webhook(BOTH, read) == plain


def test_a_webhook_record_copied_under_another_id_does_not_open() -> None:
    read = webhook_decoder.decode(msgspec.json.encode(seal_webhook(OLD, webhook("wh_1"))))
    with pytest.raises(SealingError):
        open_webhook(OLD, msgspec.structs.replace(read, id="wh_2"))


@pytest.mark.parametrize(("sealed_under", "keys", "needed"), [
    (frozenset({"k2"}), BOTH, False),
    (frozenset({"k1"}), BOTH, True),
    (frozenset({"k1", "k2"}), BOTH, True),   # a retired secret still under the old key
    (frozenset({None}), BOTH, True),         # plaintext, written before sealing
    (frozenset({None, "k2"}), BOTH, True),
    (frozenset({"k1"}), OLD, False),
])
def test_needs_reseal(sealed_under: frozenset[str | None], keys: SecretKeys,
                      needed: bool) -> None:
    assert needs_reseal(keys, sealed_under) is needed


@pytest.mark.parametrize(("text", "message"), [
    ("", "no keys"),
    ("k1", "expected id:base64key"),
    ("bad id:AAAA", "expected id:base64key"),
    ("k1:not base64!", "not base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes, not 5"),
    (f"{K1},{K1}", "appears twice"),
])
def test_malformed_key_settings_are_refused_without_showing_keys(text: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message) as raised:
        SecretKeys.parse(text)
    for entry in text.split(","):
        secret_part = entry.partition(":")[2]
        if len(secret_part) > 8:
            assert secret_part not in str(raised.value)


def test_keys_are_required_and_never_in_a_repr() -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_SECRET_KEYS is required"):
        keys_from_env(Env({}))
    keys = keys_from_env(Env({"HOOKBUS_SECRET_KEYS": f" {K2} , {K1} "}))
    assert keys.ids == ("k2", "k1") and keys.primary == "k2"
    assert K2.partition(":")[2] not in repr(keys) and K1.partition(":")[2] not in repr(keys)
