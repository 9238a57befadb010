"""How the services log in to Kafka (contract §9): the `HOOKBUS_KAFKA_*`
settings, refused at start when incomplete or contradictory (never echoing the
password), and the client options and Faust credentials made from them. The
PLAINTEXT default builds every client exactly as before."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from services.common.config import ConfigError, Env, KafkaSettings
from services.common.kafka_clients import client_options, faust_options

PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def settings(**env: str) -> KafkaSettings:
    return KafkaSettings.from_env(Env({f"HOOKBUS_KAFKA_{k}": v for k, v in env.items()}))


def test_plaintext_by_default_builds_clients_as_before() -> None:
    kafka = settings(BOOTSTRAP="k1:9092,k2:9092")
    assert kafka.security_protocol == "PLAINTEXT"
    assert client_options(kafka) == {"bootstrap_servers": "k1:9092,k2:9092"}
    assert client_options("k1:9092") == {"bootstrap_servers": "k1:9092"}
    assert faust_options(kafka) == {"broker": "kafka://k1:9092;kafka://k2:9092"}


def test_sasl_ssl_with_scram_sha_512(ca_file: str) -> None:
    kafka = settings(SECURITY_PROTOCOL="SASL_SSL", SASL_USERNAME="hookbus-router",
                     SASL_PASSWORD=PASSWORD, SSL_CAFILE=ca_file)
    options = client_options(kafka)
    context = options.pop("ssl_context")
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "hookbus-router", "sasl_plain_password": PASSWORD}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the CA file's, not the system's


@pytest.mark.parametrize(("protocol", "mechanism"), [
    ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "PLAIN"),
    ("SSL", None),
])
def test_faust_gets_the_same_options_as_the_other_clients(
    ca_file: str, protocol: str, mechanism: str | None
) -> None:
    env = {"SECURITY_PROTOCOL": protocol}
    if mechanism:
        env |= {"SASL_MECHANISM": mechanism, "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD}
    if "SSL" in protocol.split("_"):
        env["SSL_CAFILE"] = ca_file
    kafka = settings(**env)
    credentials = faust_options(kafka)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials if mechanism else faust.SSLCredentials)
    faust_auth = dict(credentials_to_aiokafka_auth(credentials))
    ours = client_options(kafka)
    del ours["bootstrap_servers"]
    assert (faust_auth.pop("ssl_context", None) is None) == ("ssl_context" not in ours)
    ours.pop("ssl_context", None)
    assert faust_auth == ours


def test_the_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")  # as `echo` writes it
    kafka = settings(SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_USERNAME="u",
                     SASL_PASSWORD_FILE=str(secret))
    assert kafka.sasl_password == PASSWORD


def test_the_password_is_never_shown(tmp_path: Path) -> None:
    kafka = settings(SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_USERNAME="u", SASL_PASSWORD=PASSWORD)
    assert PASSWORD not in repr(kafka) and PASSWORD not in str(kafka)
    assert "u" in repr(kafka)


@pytest.mark.parametrize(("env", "problem"), [
    ({"SECURITY_PROTOCOL": "SASL"}, "unknown protocol 'SASL'"),
    ({"SECURITY_PROTOCOL": "SASL_SSL"}, "needs HOOKBUS_KAFKA_SASL_USERNAME"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u"}, "HOOKBUS_KAFKA_SASL_PASSWORD"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_PASSWORD": PASSWORD}, "HOOKBUS_KAFKA_SASL_USERNAME"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD,
      "SASL_MECHANISM": "GSSAPI"}, "unknown mechanism 'GSSAPI'"),
    ({"SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD}, "PLAINTEXT does not log in"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD,
      "SASL_PASSWORD_FILE": "/p"}, "not both"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD,
      "SASL_MECHANISM": "PLAIN"}, "PLAIN sends the password in clear"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_USERNAME": "u",
      "SASL_PASSWORD_FILE": "/nonexistent/password"}, "cannot read /nonexistent/password"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "/nonexistent/ca.crt"},
     "HOOKBUS_KAFKA_SSL_CAFILE: no such file: /nonexistent/ca.crt"),
])
def test_incomplete_or_contradictory_settings_are_refused(env: dict[str, str],
                                                          problem: str) -> None:
    with pytest.raises(ConfigError, match="^[^\n]*$") as refused:
        settings(**env)
    assert problem in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_tls_files_without_tls_are_refused(ca_file: str) -> None:
    with pytest.raises(ConfigError, match="SASL_PLAINTEXT does not use TLS"):
        settings(SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_USERNAME="u", SASL_PASSWORD=PASSWORD,
                 SSL_CAFILE=ca_file)
    with pytest.raises(ConfigError, match="SSL_KEYFILE needs HOOKBUS_KAFKA_SSL_CERTFILE"):
        settings(SECURITY_PROTOCOL="SSL", SSL_KEYFILE=ca_file)


def test_mutual_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("hookbus-deliverer")
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    kafka = settings(SECURITY_PROTOCOL="SSL", SSL_CERTFILE=str(cert), SSL_KEYFILE=str(key))
    options = client_options(kafka)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_tls_files_that_are_not_usable_stop_the_service_in_one_line(tmp_path: Path) -> None:
    """A CA file that is not a certificate (or a key that is not its
    certificate's) failed only at the first connection, with a traceback."""
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="HOOKBUS_KAFKA_SSL_CAFILE: not usable for TLS"):
        settings(SECURITY_PROTOCOL="SSL", SSL_CAFILE=str(garbage))
    ca = trustme.CA()
    one, other = ca.issue_cert("one"), ca.issue_cert("other")
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    one.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    with pytest.raises(ConfigError, match="SSL_CERTFILE / KAFKA_SSL_KEYFILE: not usable for TLS"):
        settings(SECURITY_PROTOCOL="SSL", SSL_CERTFILE=str(cert), SSL_KEYFILE=str(key))
