"""An attacker's look at the `HOOKBUS_KAFKA_*` settings (contract §9): what a
misconfiguration lets through without a word. Each test here fails while the
weakness its docstring describes is there."""

from __future__ import annotations

import logging

import pytest

from services.common.config import ConfigError, Env, KafkaSettings

PASSWORD = "cleartext-on-the-wire"


def test_a_plain_password_over_plain_tcp_is_refused_or_at_least_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SASL/PLAIN sends the password itself (`\\0user\\0password`) in the
    SaslAuthenticate request; over SASL_PLAINTEXT that is cleartext on the
    network, readable by anyone on the path, and replayable. The settings
    accept it silently: no refusal, no warning at start, though every other
    contradictory combination is refused with one line. (SCRAM over
    SASL_PLAINTEXT at least keeps the password off the wire.)"""
    env = Env({
        "HOOKBUS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HOOKBUS_KAFKA_SASL_MECHANISM": "PLAIN",
        "HOOKBUS_KAFKA_SASL_USERNAME": "hookbus-ingest",
        "HOOKBUS_KAFKA_SASL_PASSWORD": PASSWORD,
    })
    with caplog.at_level(logging.WARNING):
        try:
            KafkaSettings.from_env(env)
        except ConfigError as exc:
            assert PASSWORD not in str(exc)
            return
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned, ("SASL mechanism PLAIN over SASL_PLAINTEXT (the password in cleartext) "
                    "was accepted without a refusal or a warning")
    assert all(PASSWORD not in r.getMessage() for r in warned)
