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


def aad(webhook_id: str, field_name: str) -> bytes:
    return f"{webhook_id}/{field_name}".encode()


@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_what_is_sealed_opens_to_the_same_secret_and_never_shows_it(plain: str, wid: str) -> None:
    sealed = seal(BOTH, plain, aad(wid, "secret"))
    assert is_sealed(sealed) and key_id_of(sealed) == "k2"
    assert open_sealed(BOTH, sealed, aad(wid, "secret")) == plain
    if len(plain) >= 4:
        assert plain not in sealed.removeprefix("sealed:v1:k2:")


def test_each_sealing_differs_so_equal_secrets_do_not_show_as_equal() -> None:
    assert seal(OLD, "same", aad("wh_1", "secret")) != seal(OLD, "same", aad("wh_1", "secret"))


@pytest.mark.parametrize("moved_to", [("wh_2", "secret"), ("wh_1", "client_secret")])
def test_a_sealed_value_moved_to_another_record_or_field_does_not_open(
        moved_to: tuple[str, str]) -> None:
    sealed = seal(OLD, "the secret", aad("wh_1", "secret"))
    with pytest.raises(SealingError, match="altered, or moved"):
        open_sealed(OLD, sealed, aad(*moved_to))


def test_an_altered_value_does_not_open() -> None:
    sealed = seal(OLD, "the secret", aad("wh_1", "secret"))
    prefix, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(SealingError):
        open_sealed(OLD, f"{prefix}:{base64.b64encode(bytes(raw)).decode()}", aad("wh_1", "secret"))


@pytest.mark.parametrize("value", ["sealed:v1:k1:", "sealed:v1:k1:!!!", "sealed:v2:k1:AAAA",
                                   "sealed:v1:k1:AAAA", "sealed:"])
def test_malformed_sealed_values_are_refused_not_taken_for_secrets(value: str) -> None:
    with pytest.raises(SealingError):
        open_sealed(OLD, value, aad("wh_1", "secret"))


def test_a_value_sealed_under_a_key_not_configured_names_the_key_and_nothing_else() -> None:
    sealed = seal(OLD, "the secret", aad("wh_1", "secret"))
    with pytest.raises(SealingError) as raised:
        open_sealed(NEW, sealed, aad("wh_1", "secret"))
    assert "'k1'" in str(raised.value) and "the secret" not in str(raised.value)


def test_rotation_old_key_opens_new_key_seals() -> None:
    under_old = seal(OLD, "s", aad("wh_1", "secret"))
    assert open_sealed(BOTH, under_old, aad("wh_1", "secret")) == "s"
    assert key_id_of(seal(BOTH, "s", aad("wh_1", "secret"))) == "k2"


def test_a_plaintext_secret_written_before_sealing_reads_as_it_is() -> None:
    assert open_sealed(OLD, "whsec_legacy", aad("wh_1", "secret")) == "whsec_legacy"
    assert key_id_of("whsec_legacy") is None


def test_a_customer_secret_that_looks_sealed_is_sealed_like_any_other() -> None:
    looks_sealed = seal(OLD, "s", aad("wh_1", "secret"))
    resealed = seal(NEW, looks_sealed, aad("wh_1", "secret"))
    assert resealed != looks_sealed and looks_sealed.encode() not in resealed.encode()
    assert open_sealed(NEW, resealed, aad("wh_1", "secret")) == looks_sealed


def test_a_webhook_record_holds_no_secret_and_reads_back_whole() -> None:
    plain = webhook(headers={"X-Api-Key": "receiver-api-key-123"})
    record = msgspec.json.encode(seal_webhook(BOTH, plain))
    for secret in ("c2VjcmV0LW9uZQ", "old-secret", "client-secret", "receiver-api-key-123"):
        assert secret.encode() not in record
    read = webhook_decoder.decode(record)
    assert key_ids(read) == frozenset({"k2"})
    assert open_webhook(BOTH, read) == plain


def test_a_webhook_record_copied_under_another_id_does_not_open() -> None:
    read = webhook_decoder.decode(msgspec.json.encode(seal_webhook(OLD, webhook("wh_1"))))
    with pytest.raises(SealingError):
        open_webhook(OLD, msgspec.structs.replace(read, id="wh_2"))


def _creds(**changes: str) -> ClientCredentials:
    return msgspec.structs.replace(webhook().client_credentials, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("tampered", [
    {"app_id": "app_2"},
    {"target": "https://attacker.example/h"},
    {"signature_scheme": "v1a"},
    {"client_credentials": _creds(endpoint="https://attacker.example/token")},
    {"client_credentials": _creds(client_id="someone-else")},
    {"client_credentials": _creds(token_request_type="FORM")},
    {"retired_secrets": [RetiredSecret(secret="x", expires_at=AT + timedelta(days=999))]},
    {"headers": {"X-Other": "v"}},
], ids=lambda t: next(iter(t)))
def test_a_record_whose_target_token_endpoint_or_bindings_changed_does_not_open(
        tampered: dict) -> None:
    """A writer of the topic who points a webhook's target or token endpoint at
    itself (keeping the sealed values) gets a record that sends nothing."""
    original = webhook(headers={"X-Api-Key": "k"})
    sealed = seal_webhook(OLD, original)
    if "retired_secrets" in tampered:  # the same sealed value, with a later expiry
        tampered = {"retired_secrets": [msgspec.structs.replace(
            sealed.retired_secrets[0], expires_at=AT + timedelta(days=999))]}
    if "client_credentials" in tampered:  # the sealed client secret kept, one field changed
        changed = {name: getattr(tampered["client_credentials"], name)
                   for name in ("client_id", "endpoint", "token_request_type")}
        tampered = {"client_credentials": msgspec.structs.replace(
            sealed.client_credentials, **{k: v for k, v in changed.items()
                                          if v != getattr(original.client_credentials, k)})}
    if "headers" in tampered:  # the sealed value moved under another header's name
        tampered = {"headers": {"X-Other": sealed.headers["X-Api-Key"]}}
    with pytest.raises(SealingError):
        open_webhook(OLD, msgspec.structs.replace(sealed, **tampered))


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
    ("k1", "entry 1: expected id:base64key"),
    ("bad id:AAAA", "entry 1: expected id:base64key"),
    ("k1:not base64!", "entry 1: the key is not base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "entry 1: the key must be 32 bytes, not 5"),
    (f"{K1},{K1}", "entry 2: its id is the id of an earlier entry"),
    # A key pasted in place of the id: an id-shaped key must not be echoed.
    ("2070039414c2e8a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829:x", "entry 1"),
    ("k0:" + base64.b64encode(b"k" * 32).decode() + ",c2VjcmV0LWtleS1ieXRlcw:AAAA",
     "entry 2: the key must be 32 bytes"),
])
def test_malformed_key_settings_are_refused_without_showing_keys(text: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message) as raised:
        SecretKeys.parse(text)
    for entry in text.split(","):
        for part in entry.split(":"):
            if len(part) > 8:
                assert part not in str(raised.value)


def test_keys_are_required_and_never_in_a_repr() -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_SECRET_KEYS is required"):
        keys_from_env(Env({}))
    keys = keys_from_env(Env({"HOOKBUS_SECRET_KEYS": f" {K2} , {K1} "}))
    assert keys.ids == ("k2", "k1") and keys.primary == "k2"
    assert K2.partition(":")[2] not in repr(keys) and K1.partition(":")[2] not in repr(keys)


def test_plain_text_values_can_be_refused_once_everything_is_sealed() -> None:
    keys = keys_from_env(Env({"HOOKBUS_SECRET_KEYS": K1, "HOOKBUS_PLAINTEXT_SECRETS": "refuse"}))
    assert keys.refuse_plaintext
    with pytest.raises(SealingError, match="plain text"):
        open_webhook(keys, webhook())
    assert open_webhook(keys, seal_webhook(keys, webhook())) == webhook()
    assert not keys_from_env(Env({"HOOKBUS_SECRET_KEYS": K1})).refuse_plaintext
    with pytest.raises(ConfigError, match="HOOKBUS_PLAINTEXT_SECRETS"):
        keys_from_env(Env({"HOOKBUS_SECRET_KEYS": K1, "HOOKBUS_PLAINTEXT_SECRETS": "maybe"}))
