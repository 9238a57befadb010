"""Reading an event's envelope back from where the log says it is: the
`events` record the router parsed (rebuilt exactly as the router encoded it),
or a test event's `deliveries` record. The log never copies payloads; this is
one seek and one fetch (a few ms), with a small cache."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.deliveries import delivery_task_decoder
from schemas.events import Event, EventRecord
from services.common.config import KafkaAccess
from services.common.kafka_clients import client_options
from services.common.topics import Topics
from services.eventlog.rows import EventRow

log = logging.getLogger(__name__)
_record = msgspec.json.Decoder(EventRecord).decode
_encode = msgspec.json.Encoder().encode
CACHE_BYTES = 16 << 20        # envelopes kept, in all
CACHE_LARGEST = 256 << 10     # larger ones are read each time
FETCH_TIMEOUT_MS = 1500


class Unavailable(Exception):
    """The envelope is no longer in Kafka (retention), or cannot be read now."""


class Envelopes:
    def __init__(self, kafka: KafkaAccess, topics: Topics) -> None:
        self._kafka = kafka
        self._topics = {"events": topics.events, "deliveries": topics.deliveries}
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._cached_bytes = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(self._kafka), group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", max_partition_fetch_bytes=1 << 20,
            # No long poll: a fetch (or an offsets request queued behind one on
            # the connection) answers in milliseconds.
            fetch_max_wait_ms=10)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def envelope(self, app_id: str, event_id: str, row: EventRow) -> bytes:
        """The envelope as delivered; Unavailable when it cannot be read."""
        where = (row.source, row.partition, row.offset)
        cached = self._cache.get(where)
        if cached is None:
            cached = await self._fetch(*where)
            if len(cached) <= CACHE_LARGEST and where not in self._cache:
                self._cache[where] = cached
                self._cached_bytes += len(cached)
                while self._cached_bytes > CACHE_BYTES:
                    self._cached_bytes -= len(self._cache.popitem(last=False)[1])
        else:
            self._cache.move_to_end(where)
        return _as_delivered(cached, app_id, event_id, row)

    async def _fetch(self, source: str, partition: int, offset: int) -> bytes:
        consumer = self._consumer
        if consumer is None or source not in self._topics:
            raise Unavailable("the event log is not connected to Kafka")
        tp = TopicPartition(self._topics[source], partition)
        async with self._lock:
            try:
                # A position retention deleted, or one past the end, would make
                # the fetch wait its whole timeout (with the lock held): answer
                # at once. Asked before the assignment: once assigned, the
                # fetcher's request is ahead of them on the connection.
                first = (await consumer.beginning_offsets([tp]))[tp]
                end = (await consumer.end_offsets([tp]))[tp]
                if not first <= offset < end:
                    raise Unavailable("the event's record is no longer in Kafka (past its "
                                      "retention)")
                consumer.assign([tp])
                consumer.seek(tp, offset)
                found = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=1)
            except (KafkaError, OSError, AssertionError) as exc:
                raise Unavailable(f"cannot read {tp.topic}/{partition}: {exc!r}") from None
            finally:
                # Nothing assigned between reads: no fetching while idle.
                consumer.unsubscribe()
        records = found.get(tp, [])
        if not records or records[0].offset != offset or records[0].value is None:
            raise Unavailable("the event's record is no longer in Kafka (past its retention)")
        return records[0].value


def _as_delivered(value: bytes, app_id: str, event_id: str, row: EventRow) -> bytes:
    try:
        if row.source == "deliveries":
            task = delivery_task_decoder.decode(value)
            if task.app_id != app_id or task.event_id != event_id:
                raise Unavailable("the stored position holds another event")
            return bytes(task.body)
        record = _record(value)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise Unavailable("the stored position holds no event") from None
    if record.app_id != app_id or (record.id is not None and record.id != event_id):
        raise Unavailable("the stored position holds another event")
    # As the router built it (services/router/planning.py): the id and time it
    # filled in are the ones the log was told.
    event: Any = Event(id=event_id, type=record.type, app_id=app_id,
                       created_at=row.created_at, data=record.data)
    return _encode(event)
