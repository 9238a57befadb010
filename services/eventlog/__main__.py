"""`python -m services.eventlog`: run the event log as a Faust worker until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

import faust
import prometheus_client
import uvloop
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.common import logs
from services.common.config import settings_or_exit
from services.common.kafka_clients import client_options
from services.common.topics import Topics
from services.eventlog.app import EventLog, EventLogSupport
from services.eventlog.settings import Settings

log = logging.getLogger("services.eventlog")


async def _partitions(settings: Settings, timeout: float = 120.0) -> int:
    """The partition count of `eventlog.updates` (the table's): the topic is
    created by `make run`/ensure_topics; wait for it."""
    topic = Topics(settings.kafka.topic_prefix).eventlog_updates
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(**client_options(settings.kafka))
        try:
            await admin.start()
            described = await admin.describe_topics([topic])
            partitions = described[0].get("partitions") or []
            if described[0].get("error_code", 0) == 0 and partitions:
                return len(partitions)
            problem = f"topic {topic} does not exist yet"
        except (KafkaError, OSError) as exc:
            problem = repr(exc)
        finally:
            await admin.close()
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"event log: cannot read the partitions of {topic}: {problem}")
        print(f"event log: waiting for {topic}: {problem}", file=sys.stderr)
        await asyncio.sleep(2)


def main() -> int:
    settings = settings_or_exit("eventlog", Settings.from_env)
    # uvloop, as every service: Faust (mode) runs on the policy's loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    prometheus_client.disable_created_metrics()
    partitions = asyncio.run(_partitions(settings))
    service = EventLog(settings, partitions)
    worker = faust.Worker(
        service.app,
        EventLogSupport(service),
        loglevel=settings.log_level,
        logging_config=logs.logging_config("eventlog", settings.log_format, settings.log_level),
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
