"""Topic names and their settings (contract §3), and their idempotent creation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.common.config import KafkaAccess, format_duration
from services.common.kafka_clients import client_options

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    config: dict[str, str]


class Topics:
    """Every topic name of one deployment, under its prefix."""

    def __init__(self, prefix: str, retry_delays: Sequence[float] = ()) -> None:
        self.prefix = prefix
        self.events = prefix + "events"
        self.events_dlq = prefix + "events.dlq"
        self.webhooks = prefix + "webhooks"
        self.deliveries = prefix + "deliveries"
        self.deliveries_dlq = prefix + "deliveries.dlq"
        self.attempts = prefix + "attempts"
        self.idempotency = prefix + "idempotency"
        self.retry_tiers = {
            delay: f"{prefix}deliveries.retry.{format_duration(delay)}"
            for delay in sorted(set(retry_delays))
        }

    def specs(self) -> list[TopicSpec]:
        retained = {"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)}
        dead_letters = {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)}
        return [
            TopicSpec(self.events, retained),
            TopicSpec(self.events_dlq, dead_letters),
            # A record that lost a version race is followed by ingest's repair; an
            # hour before compaction gives a stopped ingest time to come back and
            # write it (services/common/webhook_log.py). A superseded record (one
            # holding a secret before a rotation or `make reseal`) is compacted
            # away within a day: max.compaction.lag.ms rolls and cleans the segment.
            TopicSpec(self.webhooks, {"cleanup.policy": "compact",
                                      "min.compaction.lag.ms": str(3600 * 1000),
                                      "max.compaction.lag.ms": str(_DAY_MS)}),
            TopicSpec(self.deliveries, retained),
            *(TopicSpec(name, retained) for name in self.retry_tiers.values()),
            TopicSpec(self.deliveries_dlq, dead_letters),
            TopicSpec(self.attempts, retained),
            # Ingest's Idempotency-Keys: the latest record per key, kept twice the
            # default TTL (24h); a longer HOOKBUS_IDEMPOTENCY_TTL needs more.
            TopicSpec(self.idempotency, {"cleanup.policy": "compact,delete",
                                         "retention.ms": str(2 * _DAY_MS),
                                         "segment.ms": str(_DAY_MS)}),
        ]


async def ensure_topics(
    kafka: KafkaAccess, specs: Iterable[TopicSpec], *, partitions: int, replication: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        if not wanted:
            return []
        new = [NewTopic(s.name, partitions, replication, topic_configs=s.config) for s in wanted]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            log.info("some topics were created concurrently")
        names = [s.name for s in wanted]
        log.info("created topics %s", ", ".join(names))
        return names
    finally:
        await admin.close()


async def missing_topics(admin: AIOKafkaAdminClient, names: Iterable[str]) -> list[str]:
    existing = set(await admin.list_topics())
    return sorted(set(names) - existing)
