"""Topic names and their settings (contract §3), and their idempotent creation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.common.config import DEFAULT_EVENT_LOG_RETENTION, KafkaAccess, format_duration
from services.common.kafka_clients import client_options

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    config: dict[str, str]


# The event log (services/eventlog) is the Faust app `{prefix}eventlog` with one
# table, `log`; Faust names a table's changelog `{app id}-{table}-changelog`.
EVENTLOG_APP = "eventlog"
EVENTLOG_TABLE = "log"


def eventlog_app_id(prefix: str) -> str:
    """The event log's Faust app id, and so its consumer group."""
    return prefix + EVENTLOG_APP


class Topics:
    """Every topic name of one deployment, under its prefix, and (`specs`) the
    settings they are created with.

    `retry_delays` is the retry schedule (`HOOKBUS_RETRY_SCHEDULE`): its
    distinct delays name the retry tiers, and its total (`retry_window`, unless
    given) is how long a delivery may go on after its event was routed.
    `event_log_retention` (`HOOKBUS_EVENT_LOG_RETENTION`) is how long `events`,
    `attempts` and `eventlog.updates` keep records; the event log's changelog
    keeps them that long after the last retry could have been filed, and a day
    for compaction."""

    def __init__(self, prefix: str, retry_delays: Sequence[float] = (),
                 event_log_retention: float = DEFAULT_EVENT_LOG_RETENTION,
                 retry_window: float | None = None) -> None:
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
        # What the event log files, keyed by app id (schemas/eventlog.py).
        self.eventlog_updates = prefix + "eventlog.updates"
        self.eventlog_changelog = f"{eventlog_app_id(prefix)}-{EVENTLOG_TABLE}-changelog"
        self.event_log_retention = event_log_retention
        self.retry_window = sum(retry_delays) if retry_window is None else retry_window

    def specs(self) -> list[TopicSpec]:
        logged = {"cleanup.policy": "delete",
                  "retention.ms": str(_ms(self.event_log_retention))}
        retained = {"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)}
        dead_letters = {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)}
        return [
            TopicSpec(self.events, logged),
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
            TopicSpec(self.attempts, logged),
            # Ingest's Idempotency-Keys: the latest record per key, kept twice the
            # default TTL (24h); a longer HOOKBUS_IDEMPOTENCY_TTL needs more.
            TopicSpec(self.idempotency, {"cleanup.policy": "compact,delete",
                                         "retention.ms": str(2 * _DAY_MS),
                                         "segment.ms": str(_DAY_MS)}),
            TopicSpec(self.eventlog_updates, logged),
            # The event log's table (Faust's changelog: recovery and standbys).
            # Its own sweep deletes keys (tombstones) once they are past the
            # retention; `delete` bounds what a missed sweep leaves: a key is
            # written at the latest when the last retry of an event routed a
            # retention ago is filed; a webhook's hour counters live a week,
            # and its W row is written again every half retention while in use.
            # Segments roll and compact daily.
            TopicSpec(self.eventlog_changelog, {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(_ms(max(self.event_log_retention, 7 * 86400.0 + 3600)
                                        + self.retry_window) + _DAY_MS),
                "segment.ms": str(_DAY_MS),
                "max.compaction.lag.ms": str(_DAY_MS)}),
        ]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


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
