"""Reading a whole topic and keeping up with it, in every instance (no consumer
group). `ready` is set once the end offsets seen at start are reached."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.config import KafkaAccess
from services.common.kafka_clients import client_options
from services.common.shutdown import within

log = logging.getLogger(__name__)
# Closing the consumer, at most: a follower only reads, so nothing is lost when
# its close is abandoned (over TLS the close could wait 30 s for the broker).
STOP_TIMEOUT = 2.0


class TopicFollower:
    def __init__(self, kafka: KafkaAccess, topic: str,
                 apply: Callable[[ConsumerRecord], None]) -> None:
        self._kafka = kafka
        self.topic = topic
        self._apply = apply
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.partitions: list[int] = []  # the topic's, as found at start

    async def start(self) -> asyncio.Task[None]:
        """Connect and start following; returns the following task, whose
        failure the caller must treat as fatal."""
        consumer = AIOKafkaConsumer(
            self.topic,
            **client_options(self._kafka),
            group_id=None,  # no group: aiokafka assigns every partition to us
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A fetch answers as soon as a record arrives: the wait bounds how
            # often an idle follower asks (issue 13: at 100 ms ingest, with two
            # followers, took 7 CPU-ms/s more at rest, the broker 14 more). Only
            # a record of a partition left out of the waiting fetch can wait this
            # long (aiokafka leaves out a partition whose last records the loop
            # had not taken within 0.1 s).
            fetch_max_wait_ms=500,
            metadata_max_age_ms=5000,
        )
        await consumer.start()
        self._consumer = consumer
        waited = 0.0
        while not consumer.assignment():
            if waited and waited % 10 == 0:
                log.warning("waiting for the topic %s to exist", self.topic)
            await asyncio.sleep(0.25)
            waited += 0.25
        self.partitions = sorted(tp.partition for tp in consumer.assignment())
        ends = await consumer.end_offsets(list(consumer.assignment()))
        self._task = asyncio.create_task(self._follow(consumer, ends), name=f"follow {self.topic}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await within(STOP_TIMEOUT, f"closing the {self.topic} follower's Kafka consumer",
                         self._consumer.stop, log)

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        pending = {tp: end for tp, end in ends.items() if end > 0}
        if not pending:
            self.ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    self._apply(record)
                if tp in pending and records[-1].offset + 1 >= pending[tp]:
                    del pending[tp]
            if pending and not self.ready.is_set():
                # Compaction can leave the last offsets empty: trust the position.
                for tp in list(pending):
                    if await consumer.position(tp) >= pending[tp]:
                        del pending[tp]
            if not pending and not self.ready.is_set():
                log.info("caught up with %s", self.topic)
                self.ready.set()
