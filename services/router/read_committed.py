"""A Faust app whose consumer reads with isolation level `read_committed`, so
that records of an aborted Kafka transaction (a batch ingest could not finish)
are never routed, and those of an open one only once it commits.

Faust has no setting for it: its aiokafka driver asks for `read_committed`
only with `processing_guarantee="exactly_once"`
(`AIOKafkaConsumerThread._create_worker_consumer`), which the router does not
use (see KAFKA.md). So the app builds its consumer transport from these
subclasses, which set the level on the aiokafka consumer after Faust created
it and before it starts (aiokafka reads it when `start()` builds its fetcher).
`tests/integration/test_router_failures.py` proves it on a real broker: an
aborted transaction's event is not delivered, a committed one is.

The same hook keeps a partition from waiting behind a fetch of the others
(issue 13). aiokafka sends one fetch at a time to a broker, and a partition
whose fetched records are not yet taken is left out of the next one; after its
`prefetch_backoff` (0.1 s) it sends that next fetch anyway, for the other
partitions, and it long-polls (Faust's fixed 1,500 ms wait) when they are
idle. Faust's consumer thread fetches while the router's loop takes the
records: a loop busy for more than 0.1 s (a slow batch, a busy machine) then
left the partition out until that poll returned, up to 1.5 s later (1.1 s
p50 between an event and its tasks at 100 events/s on a loaded machine,
`python -m bench.hops`). With a backoff longer than the poll
(PREFETCH_BACKOFF_SECONDS), no fetch leaves the partition out: the next one
starts as soon as the loop took the records.
`python -m bench.fetch_stall` (a plain aiokafka consumer with these waits, its
loop idle 150 ms every 2 s, 1,000 records at 100/s to one of six partitions;
two runs): p50/p90/p99 368-387/1,370-1,374/1,583 ms with aiokafka's backoff;
2.3-2.4/5.3-5.9/129-130 ms with 5 s, the stall itself, at 0.6 fetches a second
at rest; 2.5-2.7/7.4-12.9/176-188 ms with a 100 ms fetch wait instead (this
module's previous setting), at 9.6-9.8 fetches a second at rest: the router at
rest used 16-21 CPU-ms/s with it, 10-13 without (`python -m bench.router`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

ISOLATION_LEVEL = "read_committed"
PREFETCH_BACKOFF_SECONDS = 5.0

log = logging.getLogger(__name__)


class _ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer

    async def on_start(self) -> None:
        await super().on_start()  # starts the consumer, which builds its fetcher
        fetcher = self._ensure_consumer()._fetcher
        if not hasattr(fetcher, "_prefetch_backoff"):
            log.warning("aiokafka's fetcher has no _prefetch_backoff: a partition may wait "
                        "behind a fetch of the others (up to 1.5 s)")
        fetcher._prefetch_backoff = PREFETCH_BACKOFF_SECONDS


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    # Set while every record of the last fetch was handed on: Faust's consumer
    # asks for more only once it has, and hands them on one per turn of the
    # event loop (the router lets it before routing more: app.py).
    handed_on: asyncio.Event | None = None

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        if self.handed_on is None:
            self.handed_on = asyncio.Event()
        self.handed_on.set()
        records = await super()._getmany(active_partitions, timeout)
        if any(records.values()):
            self.handed_on.clear()
        return records

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _ReadCommittedConsumer


class ReadCommittedApp(faust.App):
    def _new_transport(self) -> faust_aiokafka.Transport:
        return _ReadCommittedTransport(self.conf.broker_consumer, self)


def prefetch_backoff(app: faust.App) -> float | None:
    """The prefetch backoff of the app's aiokafka fetcher, once it is started."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(getattr(consumer, "_fetcher", None), "_prefetch_backoff", None)


def records_handed_on(app: faust.App) -> asyncio.Event | None:
    """Set while the app's consumer has handed on all it fetched (None
    before its first fetch)."""
    return getattr(app.consumer, "handed_on", None)


def isolation_level(app: faust.App) -> str | None:
    """The level the app's aiokafka consumer reads with, once it is started."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_isolation_level", None)
