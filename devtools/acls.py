"""Granting the ACLs of `services.common.kafka_acls` on a broker that runs an
authorizer, as an administrator (the integration test's locked broker; a
cluster without Strimzi's user operator).

    HOOKBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL HOOKBUS_KAFKA_SASL_USERNAME=admin … \\
        python -m devtools.acls      # every role's ACLs, for HOOKBUS_TOPIC_PREFIX

aiokafka has no ACL API: this sends Kafka's CreateAcls request (API key 30)
through its admin client's connection, one rule per operation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from services.common.config import Env, KafkaAccess, KafkaSettings
from services.common.kafka_acls import (
    CLUSTER,
    GROUP,
    LITERAL,
    PREFIX,
    ROLES,
    TOPIC,
    TRANSACTIONAL_ID,
    Acl,
    acls,
    user_name,
)
from services.common.kafka_clients import client_options
from services.common.topics import Topics

# Kafka's codes (org.apache.kafka.common.resource.ResourceType, PatternType,
# org.apache.kafka.common.acl.AclOperation, AclPermissionType).
_RESOURCE_TYPES = {TOPIC: 2, GROUP: 3, CLUSTER: 4, TRANSACTIONAL_ID: 5}
_PATTERN_TYPES = {LITERAL: 3, PREFIX: 4}
_OPERATIONS = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7,
               "Describe": 8, "ClusterAction": 9, "DescribeConfigs": 10, "AlterConfigs": 11,
               "IdempotentWrite": 12}
_ALLOW = 3
_CLUSTER_NAME = "kafka-cluster"


async def grant(kafka: KafkaAccess, user: str, rules: Iterable[Acl]) -> None:
    """Allow `User:<user>` every rule, from any host (idempotent)."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        for rule in rules:
            for operation in rule.operations:
                request = CreateAclsRequest(
                    _RESOURCE_TYPES[rule.resource_type], rule.name or _CLUSTER_NAME,
                    _PATTERN_TYPES[rule.pattern], f"User:{user}", "*",
                    _OPERATIONS[operation], _ALLOW)
                response = await admin._send_request(request)
                for error_code, error_message in response.creation_responses:
                    if error_code:
                        raise for_code(error_code)(f"{user} {operation} {rule}: {error_message}")
    finally:
        await admin.close()


async def grant_all(kafka: KafkaAccess, topics: Topics) -> None:
    """Every role's ACLs, each to its user (`hookbus-<role>`)."""
    for role, rules in acls(topics).items():
        await grant(kafka, user_name(role), rules)


async def _main() -> None:
    kafka = KafkaSettings.from_env(Env())
    await grant_all(kafka, Topics(kafka.topic_prefix))
    for role in ROLES:
        print(f"granted the ACLs of {role} to User:{user_name(role)}")


if __name__ == "__main__":
    asyncio.run(_main())
