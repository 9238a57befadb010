"""An attacker's look at the locked Kafka (contract §9), on a real broker of
its own, locked as devtools.broker locks it (SCRAM over TLS and plain TCP,
the standard authorizer, `admin` the only super user), with topics created
and every role's ACLs granted by `devtools.acls` as the README says.

The tests named `test_held_*` probe what an attacker holding one principal's
password would try and pass: they stay as a guard. The others failed: each
was a weakness, described in its docstring, and is now a regression test.

Changed after the fix, not weakened: principals are now named after the
topic prefix (`user_name(role, prefix)`), so the broker's users are those of
every prefix used here and `login` and the stale grant name the user of
their prefix; the assertions are as the reviewer wrote them."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.protocol.admin import DescribeAclsRequest
from aiokafka.structs import TopicPartition

from devtools.acls import grant, grant_all
from devtools.broker import Broker, Lock, _write_certificates, free_port
from services.common.config import KafkaSettings
from services.common.kafka_acls import (
    DELIVERER,
    EVENTLOG,
    GROUP,
    INGEST,
    LITERAL,
    PRODUCER,
    ROLES,
    ROUTER,
    TOPIC,
    Acl,
    deliverer_group,
    eventlog_group,
    ingest_transactional_ids,
    router_group,
    user_name,
)
from services.common.kafka_clients import client_options
from services.common.topics import Topics, ensure_topics

PREFIX = "atk."
PREFIXES = (PREFIX, "other.", "stale.")   # the deployments sharing the broker below


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    lock = Lock({user_name(role, prefix): secrets.token_urlsafe(18)
                 for prefix in PREFIXES for role in ROLES})
    broker = Broker(tmp_path_factory.mktemp("attack-locked-kafka"), free_port(), free_port(),
                    lock=lock)
    broker.start()
    yield broker
    broker.stop()


async def deployment(locked: Broker, prefix: str) -> Topics:
    """One deployment's topics, created by the administrator, and every role's
    ACLs granted (`python -m devtools.acls` under `prefix`)."""
    admin = locked.kafka_settings(prefix)
    topics = Topics(prefix, retry_delays=(1, 2))
    await ensure_topics(admin, topics.specs(), partitions=1)
    await grant_all(admin, topics)
    return topics


@pytest.fixture(scope="module")
async def topics(locked: Broker) -> Topics:
    return await deployment(locked, PREFIX)


def login(locked: Broker, role: str, prefix: str = PREFIX) -> KafkaSettings:
    return locked.kafka_settings(prefix, user_name(role, prefix))


async def write(kafka: KafkaSettings, topic: str, **producer: object) -> None:
    client = AIOKafkaProducer(**client_options(kafka), acks="all", request_timeout_ms=10000,
                              **producer)
    try:
        await client.start()
        await client.send_and_wait(topic, b"{}", key=b"wh_forged")
    finally:
        await client.stop()


async def read(kafka: KafkaSettings, topic: str, group_id: str | None = None) -> list[object]:
    """Fetch from `topic` (in `group_id`, committing), raising what the broker answers."""
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), group_id=group_id,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        await consumer.start()
        batches = await consumer.getmany(timeout_ms=5000)
        if group_id is not None:
            await consumer.commit()
        return [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()


@pytest.fixture
async def admin_of(locked: Broker) -> AsyncIterator[object]:
    opened: list[AIOKafkaAdminClient] = []

    async def open_as(kafka: KafkaSettings) -> AIOKafkaAdminClient:
        client = AIOKafkaAdminClient(**client_options(kafka))
        await client.start()
        opened.append(client)
        return client

    yield open_as
    for client in opened:
        await client.close()


# --- What held ---------------------------------------------------------------

async def test_held_the_producer_principal_can_only_write_events(
    locked: Broker, topics: Topics, admin_of,  # noqa: ANN001
) -> None:
    producer = login(locked, PRODUCER)
    await write(producer, topics.events)  # its one right

    # No transactional id, not even one under ingest's prefix: it can neither
    # fence ingest's batch producer nor hold a transaction open on `events`.
    for transactional_id in (f"{PREFIX}ingest.evil", "anything"):
        with pytest.raises(TransactionalIdAuthorizationFailed):
            await write(producer, topics.events, transactional_id=transactional_id)

    admin = await admin_of(producer)
    # No topic creation (auto-create is off, and Create is not granted either).
    response = await admin.create_topics([NewTopic(f"{PREFIX}events.x", 1, 1)])
    assert [code for _, code, *_ in response.topic_errors] == [29]  # TOPIC_AUTHORIZATION_FAILED
    # No DescribeConfigs, no DeleteRecords on its own topic.
    [described] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topics.events)])
    assert [r[0] for r in described.resources] == [29]
    with pytest.raises(KafkaError):
        await admin.delete_records({TopicPartition(topics.events, 0): RecordsToDelete(0)},
                                   timeout_ms=5000)
    # No group: neither join the router's group nor commit offsets in it.
    with pytest.raises((GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
        await read(producer, topics.events, group_id=router_group(PREFIX))


async def test_held_no_service_writes_outside_its_lane_or_joins_anothers_group(
    locked: Broker, topics: Topics,
) -> None:
    router, deliverer, ingest, eventlog = (login(locked, r)
                                           for r in (ROUTER, DELIVERER, INGEST, EVENTLOG))
    forbidden_writes = [
        (router, topics.webhooks), (router, topics.attempts), (router, topics.retry_tiers[1]),
        (router, topics.events), (deliverer, topics.deliveries), (deliverer, topics.events),
        (deliverer, topics.events_dlq), (ingest, topics.attempts),
        (ingest, topics.retry_tiers[1]), (ingest, topics.deliveries_dlq),
        (deliverer, topics.eventlog_updates), (ingest, topics.eventlog_changelog),
        (router, topics.eventlog_changelog), (eventlog, topics.events),
        (eventlog, topics.attempts), (eventlog, topics.webhooks),
        (eventlog, topics.deliveries_dlq), (eventlog, topics.retry_tiers[1]),
    ]
    for kafka, topic in forbidden_writes:
        with pytest.raises(TopicAuthorizationFailedError):
            await write(kafka, topic)
    # Neither the router nor the deliverer may use ingest's transactional ids.
    for kafka in (router, deliverer):
        with pytest.raises(TransactionalIdAuthorizationFailed):
            await write(kafka, topics.deliveries_dlq if kafka is deliverer else topics.deliveries,
                        transactional_id=f"{ingest_transactional_ids(PREFIX)}fence")
    # Nobody joins (and commits offsets in) another service's group.
    for kafka, topic, group in ((ingest, topics.webhooks, deliverer_group(PREFIX)),
                                (router, topics.webhooks, deliverer_group(PREFIX)),
                                (deliverer, topics.webhooks, router_group(PREFIX)),
                                (router, topics.events, eventlog_group(PREFIX)),
                                (eventlog, topics.events, router_group(PREFIX))):
        with pytest.raises(GroupAuthorizationFailedError):
            await read(kafka, topic, group_id=group)


async def test_held_tls_verifies_the_broker_against_the_configured_ca_and_its_name(
    locked: Broker, topics: Topics, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    good = login(locked, PRODUCER)
    _write_certificates(tmp_path / "other")  # another CA's certificate
    for kafka in (
        KafkaSettings(**{**_fields(good), "ssl_cafile": str(tmp_path / "other" / "ca.crt")}),
        KafkaSettings(**{**_fields(good), "ssl_cafile": None}),  # the system CAs
    ):
        caplog.clear()
        with pytest.raises(KafkaConnectionError):
            await write(kafka, topics.events)
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    # A name the certificate was not made for, though it resolves to the broker.
    name = socket.gethostname()
    if name in ("localhost", "127.0.0.1") or socket.gethostbyname(name) != "127.0.0.1":
        pytest.skip("no other host name of 127.0.0.1 here")
    wrong_name = KafkaSettings(**{**_fields(good), "bootstrap": f"{name}:{locked.port}"})
    caplog.clear()
    with pytest.raises(KafkaConnectionError):
        await write(wrong_name, topics.events)
    assert "Hostname mismatch" in caplog.text, caplog.text


def _fields(kafka: KafkaSettings) -> dict[str, object]:
    return {name: getattr(kafka, name) for name in KafkaSettings.__dataclass_fields__}


# --- Weaknesses --------------------------------------------------------------

async def test_two_deployments_on_one_kafka_do_not_share_principals(
    locked: Broker, topics: Topics,
) -> None:
    """`user_name(role)` is `hookbus-<role>` whatever HOOKBUS_TOPIC_PREFIX is,
    so a second deployment on the same Kafka (staging beside production, as
    the prefix allows and as this suite itself runs), granted its ACLs by
    `python -m devtools.acls` under its own prefix, gets the *same* principals:
    the second deployment's ingest login then reads the first one's
    `webhooks`, its router login joins the first one's router group and
    commits offsets there (skipping its events), its producer login writes the
    first one's `events`. Least privilege ends at the prefix."""
    await deployment(locked, "other.")
    granted = await acls_by_principal(locked)
    staging = {p for p, names in granted.items() if any(n.startswith("other.") for n in names)}
    production = {p for p, names in granted.items() if any(n.startswith(PREFIX) for n in names)}
    assert staging and production
    assert staging.isdisjoint(production), (
        f"principals of both deployments: {sorted(staging & production)}")


async def acls_by_principal(locked: Broker) -> dict[str, set[str]]:
    """Every ALLOW ACL on the broker: principal -> the resource names it covers."""
    admin = AIOKafkaAdminClient(**client_options(locked.kafka_settings(PREFIX)))
    await admin.start()
    try:  # DescribeAcls (API key 29): any resource, pattern, principal, host, operation
        response = await admin._send_request(DescribeAclsRequest(1, None, 1, None, None, 1, 3))
    finally:
        await admin.close()
    assert response.error_code == 0, response
    found: dict[str, set[str]] = {}
    for _type, name, _pattern, entries in response.resources:
        for principal, *_ in entries:
            found.setdefault(principal, set()).add(name)
    return found


async def test_granting_the_acls_again_takes_away_what_the_data_no_longer_grants(
    locked: Broker,
) -> None:
    """`python -m devtools.acls` is how a cluster without Strimzi gets "each
    principal's least ACLs", but it only ever adds (CreateAcls): a right the
    data no longer lists (an older release's, or one granted by hand) stays.
    Here the producer principal once had Read on `events` and a group; after
    `grant_all` it still reads every event of every app, though the data (and
    the README) say producers may write `events` and nothing else. Strimzi's
    KafkaUser replaces a user's ACLs; this path should too (DescribeAcls for
    the user, DeleteAcls for what is not in the data)."""
    prefix = "stale."
    admin = locked.kafka_settings(prefix)
    topics = Topics(prefix, retry_delays=(1, 2))
    await ensure_topics(admin, topics.specs(), partitions=1)
    await grant(admin, user_name(PRODUCER, prefix), [
        Acl(TOPIC, topics.events, LITERAL, ("Write", "Read")),
        Acl(GROUP, f"{prefix}audit", LITERAL, ("Read",)),
    ])
    await grant_all(admin, topics)   # the least ACLs, applied again

    producer = login(locked, PRODUCER, prefix)
    await write(producer, topics.events)
    with pytest.raises(TopicAuthorizationFailedError):
        await read(producer, topics.events)
