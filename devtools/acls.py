"""Giving each principal of a deployment exactly the ACLs of
`services.common.kafka_acls`, on a broker that runs an authorizer, as an
administrator (the integration test's locked broker; a cluster without
Strimzi's user operator).

    HOOKBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL HOOKBUS_KAFKA_SASL_USERNAME=admin … \\
        python -m devtools.acls      # every role's ACLs, for HOOKBUS_TOPIC_PREFIX

It reconciles, as Strimzi does with a `KafkaUser`: for each of the
deployment's principals (`user_name(role, prefix)`) it reads the ACLs the
broker holds (DescribeAcls), creates those of the data that are missing
(CreateAcls), then deletes every other ALLOW ACL of that principal (DeleteAcls:
an older release's, one granted by hand, one on another prefix's topics) and
prints each one it removed. DENY ACLs are left in place and printed: one set
by hand to shut a principal out is not undone by running this again. Other
principals are not touched.

aiokafka has no ACL API: these are Kafka's requests (API keys 29, 30, 31) sent
through its admin client's connection, one rule per request, at version 1 or
later (they carry the pattern type; Kafka 2.0+)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnsupportedVersionError, for_code
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

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
_ANY = 1
_RESOURCE_TYPES = {TOPIC: 2, GROUP: 3, CLUSTER: 4, TRANSACTIONAL_ID: 5}
_PATTERN_TYPES = {LITERAL: 3, PREFIX: 4}
_OPERATIONS = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7,
               "Describe": 8, "ClusterAction": 9, "DescribeConfigs": 10, "AlterConfigs": 11,
               "IdempotentWrite": 12, "CreateTokens": 13, "DescribeTokens": 14}
_DENY, _ALLOW = 2, 3
_PERMISSIONS = {_DENY: "DENY", _ALLOW: "ALLOW"}
_CLUSTER_NAME = "kafka-cluster"


def _name(codes: dict[str, int], code: int) -> str:
    return next((name for name, c in codes.items() if c == code), f"#{code}")


class Binding(NamedTuple):
    """One ACL as the broker holds it (Kafka's codes)."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def __str__(self) -> str:
        return (f"{_PERMISSIONS.get(self.permission, f'#{self.permission}')} "
                f"{_name(_OPERATIONS, self.operation)} on "
                f"{_name(_RESOURCE_TYPES, self.resource_type)} {self.resource_name} "
                f"({_name(_PATTERN_TYPES, self.pattern_type)}) "
                f"from host {self.host} for {self.principal}")


@dataclass(slots=True)
class Changes:
    """What reconciling one principal did."""

    created: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)
    denials_kept: list[Binding] = field(default_factory=list)


def bindings(user: str, rules: Iterable[Acl]) -> set[Binding]:
    """The rules as ALLOW bindings of `User:<user>` from any host, one per operation."""
    return {Binding(_RESOURCE_TYPES[rule.resource_type], rule.name or _CLUSTER_NAME,
                    _PATTERN_TYPES[rule.pattern], f"User:{user}", "*", _OPERATIONS[operation],
                    _ALLOW)
            for rule in rules for operation in rule.operations}


async def _describe(admin: AIOKafkaAdminClient, user: str) -> set[Binding]:
    """Every ACL (any resource, pattern, host, operation, permission) of `User:<user>`."""
    principal = f"User:{user}"
    response = await admin._send_request(
        DescribeAclsRequest(_ANY, None, _ANY, principal, None, _ANY, _ANY))
    if response.API_VERSION < 1:  # no pattern types: a prefixed ACL would look literal
        raise UnsupportedVersionError("DescribeAcls v1 (Kafka 2.0+) is needed")
    if response.error_code:
        raise for_code(response.error_code)(f"describing the ACLs of {principal}: "
                                            f"{response.error_message}")
    return {Binding(resource_type, name, pattern, entry_principal, host, operation, permission)
            for resource_type, name, pattern, entries in response.resources
            for entry_principal, host, operation, permission in entries}


async def _create(admin: AIOKafkaAdminClient, binding: Binding) -> None:
    response = await admin._send_request(CreateAclsRequest(*binding))
    for error_code, error_message in response.creation_responses:
        if error_code:
            raise for_code(error_code)(f"creating {binding}: {error_message}")


async def _delete(admin: AIOKafkaAdminClient, binding: Binding) -> None:
    """Delete exactly `binding` (a filter with every field given matches only it)."""
    response = await admin._send_request(DeleteAclsRequest(*binding))
    if response.API_VERSION < 1:
        raise UnsupportedVersionError("DeleteAcls v1 (Kafka 2.0+) is needed")
    for error_code, error_message, matching in response.filter_responses:
        if error_code:
            raise for_code(error_code)(f"deleting {binding}: {error_message}")
        for error_code, error_message, *_ in matching:
            if error_code:
                raise for_code(error_code)(f"deleting {binding}: {error_message}")


async def grant(kafka: KafkaAccess, user: str, rules: Iterable[Acl]) -> None:
    """Allow `User:<user>` every rule, from any host, adding to what it has
    (idempotent). `reconcile` also takes away what the rules do not give."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        for binding in sorted(bindings(user, rules)):
            await _create(admin, binding)
    finally:
        await admin.close()


async def _reconcile(admin: AIOKafkaAdminClient, user: str, rules: Iterable[Acl]) -> Changes:
    wanted = bindings(user, rules)
    held = await _describe(admin, user)
    changes = Changes()
    # Create first, then delete: a service running under the principal never
    # loses a right the data still gives it.
    for binding in sorted(wanted - held):
        await _create(admin, binding)
        changes.created.append(binding)
    for binding in sorted(held - wanted):
        if binding.permission == _DENY:
            changes.denials_kept.append(binding)
            continue
        await _delete(admin, binding)
        changes.removed.append(binding)
    return changes


async def reconcile(kafka: KafkaAccess, user: str, rules: Iterable[Acl]) -> Changes:
    """Give `User:<user>` exactly the rules: create the missing ones, delete
    its other ALLOW ACLs; its DENY ACLs stay."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        return await _reconcile(admin, user, rules)
    finally:
        await admin.close()


async def grant_all(kafka: KafkaAccess, topics: Topics) -> dict[str, Changes]:
    """Each role's ACLs under `topics.prefix`, exactly, each to its user
    (`user_name(role, topics.prefix)`): what reconciling each user did."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        changes = {}
        for role, rules in acls(topics).items():
            user = user_name(role, topics.prefix)
            changes[user] = await _reconcile(admin, user, rules)
        return changes
    finally:
        await admin.close()


async def _main() -> None:
    kafka = KafkaSettings.from_env(Env())
    topics = Topics(kafka.topic_prefix)
    changes = await grant_all(kafka, topics)
    for role in ROLES:
        user = user_name(role, topics.prefix)
        done = changes[user]
        for binding in done.removed:
            print(f"removed {binding}")
        for binding in done.denials_kept:
            print(f"kept {binding} (a DENY: remove it by hand if it is not wanted)")
        print(f"User:{user} has the ACLs of {role} ({len(done.created)} created, "
              f"{len(done.removed)} removed)")


if __name__ == "__main__":
    asyncio.run(_main())
