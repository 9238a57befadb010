"""Settings parsing: durations, lists, and refusal of bad values at start-up."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError, Env, format_duration, parse_duration
from services.deliverer.settings import Settings as DelivererSettings
from services.ingest.settings import Settings as IngestSettings


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
    settings = DelivererSettings.from_env(Env({}))
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
    settings = IngestSettings.from_env(Env({"HOOKBUS_JWT_SECRET": secret}))
    assert secret not in repr(settings)


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
        DelivererSettings.from_env(Env({name: value}))
