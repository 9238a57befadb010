"""Replay: put a webhook's dead letters back on `deliveries`, as fresh tasks.

Only the webhook's own partition of `deliveries.dlq` is read (dead letters are
keyed by webhook id), starting from `since` by the broker's timestamp index and
stopping at the end offset seen when the replay began, so a replay ends even
while new dead letters arrive. Dead letters stay where they are: replaying the
same window twice enqueues it twice."""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas.deliveries import delivery_task_decoder
from services.common.config import KafkaAccess
from services.common.kafka_clients import client_options

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
PROGRESS_EVERY = 1000


async def replay_dead_letters(
    kafka: KafkaAccess, dlq_topic: str, deliveries_topic: str, producer: AIOKafkaProducer,
    webhook_id: str, since: datetime | None, until: datetime | None,
) -> int:
    key = webhook_id.encode()
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = sorted(await producer.partitions_for(dlq_topic))
        tp = TopicPartition(dlq_topic, DefaultPartitioner()(key, partitions, partitions))
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if since is not None:
            found = (await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)}))[tp]
            consumer.seek(tp, found.offset if found is not None else end)
        until_ms = None if until is None else int(until.timestamp() * 1000)
        replayed = scanned = 0
        report_at = PROGRESS_EVERY
        while await consumer.position(tp) < end:
            sent = []
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset >= end:
                    break
                scanned += 1
                if record.key != key or (until_ms is not None and record.timestamp > until_ms):
                    continue
                if record.value is None:
                    continue  # a tombstone: nothing to deliver
                try:
                    task = delivery_task_decoder.decode(record.value)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    continue  # a poison record: nothing to deliver
                fresh = msgspec.structs.replace(task, attempt=1, tried=False, due_at=None,
                                                last_error=None)
                sent.append(await producer.send(deliveries_topic, _encoder.encode(fresh), key=key))
                replayed += 1
            for future in sent:
                await future
            if scanned >= report_at:
                report_at = scanned + PROGRESS_EVERY
                log.info("replay: %d dead letters scanned, %d re-enqueued", scanned, replayed,
                         extra={"webhook_id": webhook_id})
        log.info("replay done: %d dead letters scanned, %d re-enqueued", scanned, replayed,
                 extra={"webhook_id": webhook_id})
        return replayed
    finally:
        await consumer.stop()
