"""How every Kafka client of Hookbus connects: the options an aiokafka producer,
consumer or admin client is built with, and the credentials of the router's
Faust app, both from one `KafkaSettings` (contract §9).

A bare string is bootstrap servers over PLAINTEXT (the development tools and
tests), and so is a PLAINTEXT `KafkaSettings`: for them the options are
`bootstrap_servers` alone, exactly what the clients were built with before
security existed."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from services.common.config import KafkaAccess, KafkaSettings


# How long a producer waits for more records before it sends a batch (issue 13).
# aiokafka has one produce request in flight per broker, and what arrives
# meanwhile goes in the next: under load records are batched whatever the linger.
# A write a delivery waits for (ingest's events, the router's tasks) is sent at
# once: a linger of 2 ms cost 2.5 ms at each of those hops at 100 events/s. So
# is one that a loop awaits before its next record (the event log's rekey
# agent): there a linger bounds the rate, at the loop's concurrency / linger.
LATENCY_LINGER_MS = 0
# A write nothing waits for but an offset commit (attempt records, retry tiers,
# dead letters, the event log's changelog) waits to share a request with others:
# fewer, larger requests for the service and the broker.
BACKGROUND_LINGER_MS = 20


def bootstrap_of(kafka: KafkaAccess) -> str:
    return kafka if isinstance(kafka, str) else kafka.bootstrap


def client_options(kafka: KafkaAccess) -> dict[str, Any]:
    """`bootstrap_servers` and, unless PLAINTEXT, `security_protocol`, the SASL
    mechanism, user and password, and the TLS context: keyword arguments of
    `AIOKafkaProducer`, `AIOKafkaConsumer` and `AIOKafkaAdminClient`."""
    options: dict[str, Any] = {"bootstrap_servers": bootstrap_of(kafka)}
    if isinstance(kafka, str) or kafka.security_protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = kafka.security_protocol
    if kafka.uses_sasl:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    if kafka.uses_tls:
        options["ssl_context"] = tls_context(kafka)
    return options


def faust_options(kafka: KafkaAccess) -> dict[str, Any]:
    """`broker` and, unless PLAINTEXT, `broker_credentials`: keyword arguments
    of `faust.App` (its aiokafka driver passes them to every client it builds)."""
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{host}" for host in bootstrap_of(kafka).split(","))}
    if isinstance(kafka, str) or kafka.security_protocol == "PLAINTEXT":
        return options
    if kafka.uses_sasl:
        # With a TLS context Faust speaks SASL_SSL, without one SASL_PLAINTEXT.
        options["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username, password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=tls_context(kafka) if kafka.uses_tls else None)
    else:
        options["broker_credentials"] = faust.SSLCredentials(tls_context(kafka))
    return options


def tls_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Verifies the brokers' certificates (and host names) against the CA file,
    else the system CAs; presents the client certificate when one is set."""
    return create_ssl_context(cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile,
                              keyfile=kafka.ssl_keyfile)
