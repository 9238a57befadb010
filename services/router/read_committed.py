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

The same hook sets the fetch wait (issue 13), which Faust fixes at 1,500 ms.
A fetch answers as soon as a record arrives, but aiokafka has one fetch in
flight per broker, and a partition whose records Faust has not taken within
0.1 s is left out of the next: its new records wait until that fetch of the
other partitions returns. On a busy machine that put 1.1 s (p50) between an
event and its tasks at 100 events/s (`python -m bench.hops`: 1,100 -> 16 ms p50
with 100 ms); at rest it costs ten fetches a second."""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

ISOLATION_LEVEL = "read_committed"
FETCH_MAX_WAIT_MS = 100


class _ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = ISOLATION_LEVEL
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _ReadCommittedConsumer


class ReadCommittedApp(faust.App):
    def _new_transport(self) -> faust_aiokafka.Transport:
        return _ReadCommittedTransport(self.conf.broker_consumer, self)


def isolation_level(app: faust.App) -> str | None:
    """The level the app's aiokafka consumer reads with, once it is started."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_isolation_level", None)
