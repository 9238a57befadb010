"""`python -m devtools.topics`: create every topic of the contract (§3) for the
configured prefix, retry schedule and event log retention, idempotently (a
topic that exists is left as it is: change its settings with kafka-configs). Against a locked Kafka, run
it with an administrator's `HOOKBUS_KAFKA_*` settings: no service may create topics."""

from __future__ import annotations

import asyncio

from services.common.config import Env, KafkaSettings, event_log_retention_from_env
from services.common.topics import Topics, ensure_topics
from services.deliverer.settings import retry_schedule_from_env


def deployment_topics(env: Env) -> Topics:
    """The topics of the configured prefix, retry schedule and event log
    retention (no service's other settings, such as sealing keys, are needed to
    create them)."""
    return Topics(KafkaSettings.from_env(env).topic_prefix, retry_schedule_from_env(env),
                  event_log_retention=event_log_retention_from_env(env))


async def create(env: Env) -> list[str]:
    topics = deployment_topics(env)
    return await ensure_topics(
        KafkaSettings.from_env(env), topics.specs(),  # (a locked Kafka: an admin's login)
        partitions=env.int("TOPIC_PARTITIONS", 6),
    )


if __name__ == "__main__":
    created = asyncio.run(create(Env()))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
