"""`python -m bench.fetch_stall`: what a consumer's short stall costs its
partition under each fetch setting (services/router/read_committed.py).

On a broker of its own, a topic of six partitions; a plain aiokafka consumer
(read_committed, as the router's) reads records written at 100/s to one of
them, and every 2 s its loop does not take what was fetched for 150 ms, while
aiokafka's fetcher goes on (as Faust's consumer thread does while the router's
loop is busy). Per setting (fetch wait, prefetch backoff): p50/p90/p99/max of
receipt minus CreateTime, the records later than 200 ms, and the fetches the
consumer sent per second at rest (over 5 s with nothing written).

    python -m bench.fetch_stall [--records 1000] [--repeats 2]"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer import fetcher as aiokafka_fetcher

from bench.run import percentile
from devtools.broker import Broker, free_port

TOPIC = "stall"
# (fetch wait ms, prefetch backoff s): Faust's, HEAD's 100 ms poll, the router's.
SETTINGS = ((1500, 0.1), (100, 0.1), (1500, 5.0), (500, 5.0))
STALL_EVERY, STALL_FOR = 2.0, 0.15


class _CountingFetcher:
    """Counts the fetch requests aiokafka's fetchers send."""

    def __init__(self) -> None:
        self.sent = 0
        self._original = aiokafka_fetcher.Fetcher._proc_fetch_request

    def __enter__(self) -> _CountingFetcher:
        original, counter = self._original, self

        async def counted(fetcher, assignment, node_id, request):  # type: ignore[no-untyped-def]
            counter.sent += 1
            return await original(fetcher, assignment, node_id, request)

        aiokafka_fetcher.Fetcher._proc_fetch_request = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        aiokafka_fetcher.Fetcher._proc_fetch_request = self._original  # type: ignore[method-assign]


async def trial(bootstrap: str, wait_ms: int, backoff: float, records: int) -> dict:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=wait_ms,
                                isolation_level="read_committed")
    await producer.start()
    await consumer.start()
    consumer._fetcher._prefetch_backoff = backoff  # as read_committed.py sets it
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        latencies: list[float] = []

        async def take() -> None:
            stalled_at = time.monotonic()
            while True:
                got = await consumer.getmany(timeout_ms=1000)
                now = time.time()
                latencies.extend((now - r.timestamp / 1000) * 1000
                                 for batch in got.values() for r in batch)
                if time.monotonic() - stalled_at > STALL_EVERY:
                    await asyncio.sleep(STALL_FOR)  # the loop busy; the fetcher is not
                    stalled_at = time.monotonic()

        taker = asyncio.create_task(take())
        for n in range(records):
            await producer.send(TOPIC, b"x", key=b"k", partition=0)
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)
        with _CountingFetcher() as fetches:
            await asyncio.sleep(5.0)
        taker.cancel()
        return {"wait_ms": wait_ms, "backoff_s": backoff, "n": len(latencies),
                "p50": statistics.median(latencies), "p90": percentile(latencies, 0.9),
                "p99": percentile(latencies, 0.99), "max": max(latencies),
                "over_200_ms": sum(1 for x in latencies if x > 200),
                "fetches_per_s_at_rest": fetches.sent / 5.0}
    finally:
        await consumer.stop()
        await producer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookbus-fetch-stall-") as tmp:
        broker = Broker(Path(tmp) / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        try:
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(TOPIC, 6, 1)])
            finally:
                await admin.close()
            for _ in range(args.repeats):
                for wait_ms, backoff in SETTINGS:
                    r = await trial(broker.bootstrap, wait_ms, backoff, args.records)
                    print(f"fetch wait {wait_ms:5d} ms, prefetch backoff {backoff:3.1f} s: "
                          f"p50 {r['p50']:7.1f}  p90 {r['p90']:7.1f}  p99 {r['p99']:7.1f}  "
                          f"max {r['max']:6.0f} ms; {r['over_200_ms']:4d} of {r['n']} over 200 ms;"
                          f" {r['fetches_per_s_at_rest']:.1f} fetches/s at rest", flush=True)
        finally:
            await asyncio.to_thread(broker.stop)


if __name__ == "__main__":
    asyncio.run(main())
