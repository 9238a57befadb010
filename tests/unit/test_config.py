"""Settings parsing: durations, lists, and refusal of bad values at start-up."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError, Env, format_duration, parse_duration
from services.deliverer.settings import Settings as DelivererSettings
from services.ingest.settings import Settings as IngestSettings
from services.reseal import main as reseal_main
from tests.conftest import SECRET_KEYS_TEXT

KEYS = {"HOOKBUS_SECRET_KEYS": SECRET_KEYS_TEXT}
JWT = {"HOOKBUS_JWT_SECRET": "s3cr3t-value-of-at-least-32-bytes!"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("5s", 5), ("5m", 300), ("30m", 1800), ("2h", 7200), ("5d", 432000),
    (" 1.5s ", 1.5),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "-1s", "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (300, "5m"), (7200, "2h"),
                                                (36000, "10h"), (90, "90s"), (0.25, "250ms")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_contract_defaults() -> None:
    settings = DelivererSettings.from_env(Env(KEYS))
    assert settings.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.delivery_timeout == 15
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.kafka.topic_prefix == "hookbus."
    assert settings.target_policy.allow_http is False


def test_ingest_refuses_to_start_without_a_jwt_secret() -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_JWT_SECRET"):
        IngestSettings.from_env(Env({}))


def test_the_jwt_secret_is_not_in_the_repr() -> None:
    secret = "s3cr3t-value-of-at-least-32-bytes!"
    settings = IngestSettings.from_env(Env({"HOOKBUS_JWT_SECRET": secret} | KEYS))
    assert secret not in repr(settings)
    for entry in SECRET_KEYS_TEXT.split(","):
        assert entry.partition(":")[2] not in repr(settings)


@pytest.mark.parametrize("secret", ["s3cr3t-value", "set-me", "x" * 31])
def test_ingest_refuses_a_jwt_secret_shorter_than_32_bytes(secret: str) -> None:
    """The Kubernetes base ships `set-me`: ingest fails closed until a key is set."""
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        IngestSettings.from_env(Env({"HOOKBUS_JWT_SECRET": secret}))


@pytest.mark.parametrize(("name", "value"), [
    ("HOOKBUS_RETRY_SCHEDULE", "5s,soon"), ("HOOKBUS_DELIVERY_TIMEOUT", "fast"),
    ("HOOKBUS_ALLOW_HTTP", "maybe"), ("HOOKBUS_ALLOWED_PRIVATE_CIDRS", "10.0.0.0/33"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        DelivererSettings.from_env(Env({name: value} | KEYS))


@pytest.mark.parametrize("load", [
    lambda env: IngestSettings.from_env(Env(JWT | env)),
    lambda env: DelivererSettings.from_env(Env(env)),
])
@pytest.mark.parametrize(("env", "message"), [
    ({}, "HOOKBUS_SECRET_KEYS is required"),
    ({"HOOKBUS_SECRET_KEYS": "k1:c2hvcnQ="}, "HOOKBUS_SECRET_KEYS: entry 1: the key must be 32 bytes"),
])
def test_services_holding_secrets_refuse_to_start_without_a_sealing_key(
        load, env: dict[str, str], message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        load(env)


def test_reseal_refuses_to_start_without_a_key(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HOOKBUS_SECRET_KEYS", raising=False)
    assert reseal_main([]) == 2
    assert "HOOKBUS_SECRET_KEYS is required" in capsys.readouterr().err


def test_new_key_prints_an_entry_the_services_accept(capsys: pytest.CaptureFixture[str]) -> None:
    assert reseal_main(["new-key", "k9"]) == 0
    entry = capsys.readouterr().out.strip()
    assert entry.startswith("k9:")
    assert DelivererSettings.from_env(Env({"HOOKBUS_SECRET_KEYS": entry})).secret_keys.ids == ("k9",)


def test_the_token_issuer_and_audience_are_optional_settings() -> None:
    assert (IngestSettings.from_env(Env(JWT | KEYS)).jwt_issuer,
            IngestSettings.from_env(Env(JWT | KEYS)).jwt_audience) == (None, None)
    settings = IngestSettings.from_env(Env(JWT | KEYS | {"HOOKBUS_JWT_ISSUER": "https://a.example",
                                                         "HOOKBUS_JWT_AUDIENCE": "hookbus"}))
    assert (settings.jwt_issuer, settings.jwt_audience) == ("https://a.example", "hookbus")


def test_the_dev_stacks_key_is_a_key_and_creating_topics_needs_no_sealing_key() -> None:
    """Chaos and bench stacks run on DEV_SECRET_KEYS (it once held 31 bytes)."""
    from devtools.processes import DEV_SECRET_KEYS
    from devtools.topics import deployment_topics

    assert DelivererSettings.from_env(Env({"HOOKBUS_SECRET_KEYS": DEV_SECRET_KEYS})).secret_keys
    topics = deployment_topics(Env({"HOOKBUS_RETRY_SCHEDULE": "1s,1m"}))
    assert {"hookbus.deliveries.retry.1s", "hookbus.deliveries.retry.1m"} <= \
        {spec.name for spec in topics.specs()}
