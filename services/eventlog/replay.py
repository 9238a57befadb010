"""Replay jobs: a webhook's dead letters put back on `deliveries` as fresh
tasks, by the event log instance that owns the webhook's app, in the
background, at a bounded rate, with progress in the table.

- Only the webhook's partition of `deliveries.dlq` is read (dead letters are
  keyed by webhook id), from `since` by the broker's time index to the end
  offset seen when the job began: a job ends even while new dead letters come.
- A dead letter is replayed only when it is of this webhook and of this app
  (a letter naming another app was forged, or misplaced: skipped).
- At most `rate` letters a second per job (live traffic shares `deliveries`),
  and one job per webhook at a time.
- Progress (the next offset to read) is written to the table after the tasks
  before it are acknowledged; the instance that owns the app next resumes a
  running job from there. Replaying is at least once: a crash between a
  progress write and the next may enqueue a few letters twice (the same
  `webhook-id`, so receivers deduplicate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.deliveries import delivery_task_decoder
from schemas.eventlog_api import ReplayJob
from services.common.config import KafkaAccess
from services.common.kafka_clients import client_options

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
PROGRESS_SECONDS = 1.0


class JobRow(msgspec.Struct, kw_only=True):
    """A J value: the job as shown, and where it stands."""

    job: ReplayJob
    app_id: str
    dlq_partition: int
    next_offset: int
    end_offset: int


job_row = msgspec.json.Decoder(JobRow).decode
encode_job_row = _encode


async def window(kafka: KafkaAccess, tp: TopicPartition, since: datetime | None) -> tuple[int, int]:
    """The offsets a job reads: from `since` (or the start) to the end now."""
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if since is not None:
            # Before 1970 is the start (the broker takes no negative time).
            at = max(0, int(since.timestamp() * 1000))
            found = (await consumer.offsets_for_times({tp: at}))[tp]
            start = found.offset if found is not None else end
        return start, end
    finally:
        await consumer.stop()


async def run(row: JobRow, *, kafka: KafkaAccess, dlq_topic: str, deliveries_topic: str,
              producer: AIOKafkaProducer, rate: float,
              save: Callable[[JobRow], asyncio.Future | None]) -> None:
    """Run a job to its end from `row.next_offset`, saving progress as it goes
    (`save` writes the row; awaited when it returns an awaitable)."""
    job = row.job
    key = job.webhook_id.encode()
    tp = TopicPartition(dlq_topic, row.dlq_partition)
    until_ms = None if job.until is None else int(job.until.timestamp() * 1000)
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=200)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, row.next_offset)
        budget_at = time.monotonic()
        saved_at = time.monotonic()
        while row.next_offset < row.end_offset:
            batch = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
            sent = []
            last = None
            past_end = False
            for record in batch:
                if record.offset >= row.end_offset:
                    past_end = True
                    break
                last = record.offset
                job.scanned += 1
                task = _replayable(record.key, record.value, key, row.app_id, until_ms,
                                   record.timestamp)
                if task is None:
                    continue
                fresh = msgspec.structs.replace(
                    task, attempt=1, tried=False, due_at=None, not_before=None, deadline=None,
                    unknown_since=None, last_error=None, origin=f"replay:{job.id}")
                # A token bucket: `rate` a second on average, bursts of one second.
                budget_at = max(budget_at + 1 / rate, time.monotonic() - 1.0)
                if budget_at > time.monotonic():
                    await asyncio.sleep(budget_at - time.monotonic())
                sent.append(await producer.send(deliveries_topic, _encode(fresh), key=key))
                job.replayed += 1
            if sent:
                await asyncio.gather(*sent)
            if past_end:
                row.next_offset = row.end_offset
            elif last is not None:
                row.next_offset = last + 1
            elif not batch and await consumer.position(tp) >= row.end_offset:
                row.next_offset = row.end_offset
            elif not batch:
                # Nothing left before the end (deleted by retention, or
                # transaction markers): jump to where the consumer stands.
                row.next_offset = max(row.next_offset, await consumer.position(tp))
            if time.monotonic() - saved_at >= PROGRESS_SECONDS:
                saved_at = time.monotonic()
                await _saved(save, row)
        job.state = "done"
        job.finished_at = datetime.now(UTC)
        await _saved(save, row)
        log.info("replay done: %d dead letters read, %d re-enqueued", job.scanned, job.replayed,
                 extra={"webhook_id": job.webhook_id, "job_id": job.id})
    finally:
        await consumer.stop()


def _replayable(record_key: bytes | None, value: bytes | None, key: bytes, app_id: str,
                until_ms: int | None, timestamp: int):  # type: ignore[no-untyped-def]
    if record_key != key or value is None:
        return None
    if until_ms is not None and timestamp > until_ms:
        return None
    try:
        task = delivery_task_decoder.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None  # a poison record: nothing to deliver
    if task.app_id != app_id or task.webhook_id != key.decode():
        return None
    return task


async def _saved(save: Callable[[JobRow], asyncio.Future | None], row: JobRow) -> None:
    pending = save(row)
    if pending is not None:
        await pending
