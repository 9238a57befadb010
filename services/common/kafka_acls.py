"""The Kafka ACLs each Hookbus principal needs, and no more (contract §9), as
data: the integration test applies them to a broker running the standard
authorizer and runs the services under them, and the Strimzi overlay's
`KafkaUser` resources are generated from them (`python -m devtools.k8s_users`).

One principal per service (ingest, router, deliverer, the event log), and
one for producers, which may write `events` and nothing else, named after the deployment's topic prefix (`user_name`), so
that two deployments sharing a Kafka do not share principals. Topics are named literally: a prefixed pattern on
`hookbus.events` would also match `hookbus.events.dlq`, one on
`hookbus.deliveries` every retry tier and the dead letters. Only the retry
tiers (their names follow `HOOKBUS_RETRY_SCHEDULE`) and ingest's transactional
ids (one per process) are prefixes. Operations are spelt as Kafka and Strimzi
spell them. Read and Write imply Describe on a topic, group or transactional
id, so it is not listed beside them.

Nobody here creates topics (`python -m devtools.topics` does, or Strimzi's
topic operator, with an administrator's rights), and no service needs a
cluster-level right: the idempotent producers need only Write on their
topics (Kafka 3.0+, KIP-679), and the router reads its topics' size limits
with DescribeConfigs on those two topics. The Faust apps (router, event log)
need Read on their group only: they declare no topic (their changelog is
created with the others) and use no leader topic."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import DEFAULT_TOPIC_PREFIX, ConfigError
from services.common.topics import Topics, eventlog_app_id

TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER = "topic", "group", "transactionalId", "cluster"
LITERAL, PREFIX = "literal", "prefix"

INGEST, ROUTER, DELIVERER, EVENTLOG, PRODUCER = (
    "ingest", "router", "deliverer", "eventlog", "producer")
ROLES = (INGEST, ROUTER, DELIVERER, EVENTLOG, PRODUCER)


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """Allow `operations` on one resource (from any host)."""

    resource_type: str              # TOPIC, GROUP, TRANSACTIONAL_ID or CLUSTER
    name: str                       # "" for the cluster
    pattern: str                    # LITERAL or PREFIX
    operations: tuple[str, ...]     # e.g. ("Read", "Write")


def user_name(role: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The user name (`User:<name>`, and the Strimzi `KafkaUser`) of `role` in
    the deployment whose topics are under `prefix`: the prefix without its
    final '.', then '-<role>' (`hookbus.` -> `hookbus-ingest`, `staging.` ->
    `staging-ingest`). So two deployments on one Kafka have principals of
    their own, as long as their prefixes differ by more than a final '.'."""
    base = prefix.removesuffix(".")
    if not base:
        raise ConfigError(f"cannot name Kafka principals after the topic prefix {prefix!r}: "
                          "set HOOKBUS_TOPIC_PREFIX (e.g. 'hookbus.')")
    return f"{base}-{role}"


def router_group(prefix: str) -> str:
    return f"{prefix}router"          # the Faust app's id (services/router/app.py)


def deliverer_group(prefix: str) -> str:
    return f"{prefix}deliverer"       # services/deliverer/app.py


def eventlog_group(prefix: str) -> str:
    return eventlog_app_id(prefix)    # the Faust app's id (services/eventlog/app.py)


def ingest_transactional_ids(prefix: str) -> str:
    return f"{prefix}ingest."         # services/ingest/state.py, one id per process


def retry_tiers(prefix: str) -> str:
    return f"{prefix}deliveries.retry."


def acls(topics: Topics) -> dict[str, tuple[Acl, ...]]:
    """Each role's ACLs for the topics under `topics.prefix`."""
    prefix = topics.prefix

    def topic(name: str, *operations: str) -> Acl:
        return Acl(TOPIC, name, LITERAL, operations)

    return {
        INGEST: (
            topic(topics.events, "Write"),                # events, batches
            topic(topics.webhooks, "Read", "Write"),      # the view; API writes, repairs
            topic(topics.idempotency, "Read", "Write"),   # Idempotency-Keys
            # POST …/test: its task, then its Routed record. (Attempts and
            # replays are the event log's: ingest relays them.)
            topic(topics.deliveries, "Write"),
            topic(topics.eventlog_updates, "Write"),
            Acl(TRANSACTIONAL_ID, ingest_transactional_ids(prefix), PREFIX, ("Write",)),
        ),
        ROUTER: (
            topic(topics.events, "Read"),
            topic(topics.webhooks, "Read"),
            topic(topics.deliveries, "Write", "DescribeConfigs"),   # max.message.bytes
            topic(topics.events_dlq, "Write", "DescribeConfigs"),
            topic(topics.eventlog_updates, "Write"),      # Routed records
            Acl(GROUP, router_group(prefix), LITERAL, ("Read",)),
        ),
        DELIVERER: (
            topic(topics.deliveries, "Read"),
            Acl(TOPIC, retry_tiers(prefix), PREFIX, ("Read", "Write")),
            topic(topics.deliveries_dlq, "Write"),
            topic(topics.attempts, "Write"),
            topic(topics.webhooks, "Read", "Write"),      # the view; auto-disable
            Acl(GROUP, deliverer_group(prefix), LITERAL, ("Read",)),
        ),
        EVENTLOG: (
            topic(topics.events, "Read"),                 # the table; envelopes
            topic(topics.attempts, "Read"),               # re-keyed to eventlog.updates
            topic(topics.eventlog_updates, "Read", "Write"),
            topic(topics.eventlog_changelog, "Read", "Write"),   # its table: recovery, standbys
            topic(topics.deliveries, "Read", "Write"),    # test events' envelopes; resend, replay
            topic(topics.deliveries_dlq, "Read"),         # replay
            Acl(GROUP, eventlog_group(prefix), LITERAL, ("Read",)),
        ),
        PRODUCER: (
            topic(topics.events, "Write"),
        ),
    }
