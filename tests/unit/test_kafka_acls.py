"""The ACLs of each principal, read back as who may read and write which topic:
the table below is the least each service needs (the integration test runs the
services under exactly these ACLs and finds no request denied)."""

from __future__ import annotations

import pytest

from services.common.kafka_acls import (
    DELIVERER,
    EVENTLOG,
    INGEST,
    LITERAL,
    PREFIX,
    PRODUCER,
    ROLES,
    ROUTER,
    TOPIC,
    acls,
)
from services.common.topics import Topics

TOPICS = Topics("hookbus.", (5, 300, 1800))


def allowed(role: str, operation: str) -> set[str]:
    """The topics of TOPICS on which `role` may do `operation`."""
    names = {spec.name for spec in TOPICS.specs()}
    found = set()
    for acl in acls(TOPICS)[role]:
        if acl.resource_type != TOPIC or operation not in acl.operations:
            continue
        found |= {n for n in names
                  if (n == acl.name if acl.pattern == LITERAL else n.startswith(acl.name))}
    return {name.removeprefix("hookbus.") for name in found}


TIERS = {"deliveries.retry.5s", "deliveries.retry.5m", "deliveries.retry.30m"}


@pytest.mark.parametrize(("role", "reads", "writes"), [
    (INGEST, {"webhooks", "idempotency"},
     {"events", "webhooks", "idempotency", "deliveries", "eventlog.updates"}),
    (ROUTER, {"events", "webhooks"}, {"deliveries", "events.dlq", "eventlog.updates"}),
    (DELIVERER, {"deliveries", "webhooks", *TIERS},
     {"webhooks", "attempts", "deliveries.dlq", *TIERS}),
    # Its table (fed by events and eventlog.updates, which it fills with the
    # attempts re-keyed by app) and changelog; envelopes from events and (test
    # events) deliveries; resends and replays of dead letters to deliveries.
    (EVENTLOG, {"events", "attempts", "eventlog.updates", "eventlog-log-changelog",
                "deliveries", "deliveries.dlq"},
     {"eventlog.updates", "eventlog-log-changelog", "deliveries"}),
    (PRODUCER, set(), {"events"}),
])
def test_who_reads_and_writes_what(role: str, reads: set[str], writes: set[str]) -> None:
    assert allowed(role, "Read") == reads
    assert allowed(role, "Write") == writes


def test_producers_may_write_events_and_nothing_else() -> None:
    [acl] = acls(TOPICS)[PRODUCER]
    assert (acl.resource_type, acl.name, acl.pattern, acl.operations) == \
        (TOPIC, "hookbus.events", LITERAL, ("Write",))


def test_no_principal_creates_deletes_alters_or_administers() -> None:
    for role in ROLES:
        for acl in acls(TOPICS)[role]:
            assert acl.resource_type != "cluster", role
            assert not {"All", "Create", "Delete", "Alter", "AlterConfigs",
                        "ClusterAction"} & set(acl.operations), (role, acl)


def test_prefixes_are_only_for_names_made_at_run_time() -> None:
    prefixed = {(role, acl.resource_type, acl.name) for role in ROLES
                for acl in acls(TOPICS)[role] if acl.pattern == PREFIX}
    assert prefixed == {(DELIVERER, "topic", "hookbus.deliveries.retry."),
                        (INGEST, "transactionalId", "hookbus.ingest.")}


def test_groups_are_the_services_own() -> None:
    groups = {role: [a.name for a in acls(TOPICS)[role] if a.resource_type == "group"]
              for role in ROLES}
    assert groups == {INGEST: [], ROUTER: ["hookbus.router"],
                      DELIVERER: ["hookbus.deliverer"], EVENTLOG: ["hookbus.eventlog"],
                      PRODUCER: []}
