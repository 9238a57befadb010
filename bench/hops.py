"""`python -m bench.hops`: where a delivery's latency goes, hop by hop.

On a broker of its own and a fresh stack (as `make bench` starts them), one
app with one webhook to a local receiver; after a warm-up, single events are
published at `--rate` per second for `--seconds` (open loop). Each event's
times are read from the records themselves (their CreateTime) and the
receiver, and printed as p50, p90 and p99 per hop:

- publish -> `events` record: ingest's handling, up to its producer's send;
- `events` record -> `deliveries` record: the router (its fetch, routing and
  send);
- `deliveries` record -> receipt: the deliverer (its fetch, queue, signing
  and POST) and the receiver;
- publish -> receipt, and the publish's own round trip (ingest's answer waits
  for Kafka's acknowledgement).

With `--flood N`, as `make bench`'s noisy neighbour: another app with eight
webhooks to endpoints that answer after 5 s publishes N events in one batch
just before the paced events, so that the hops show where a quiet app's
events wait beside a flood (its events and the flood's are on different
partitions of `events`: their keys are the app ids, `app_quiet` and
`app_noisy`).

Times of two processes are compared (the records' CreateTime is the writer's
clock), all on this machine's one clock."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.run import NOISY_APP, QUIET_APP, Bench, CountingReceivers, data_of, percentile, wait_for
from devtools.broker import Broker, free_port

WARM = 200


def _row(name: str, values: list[float]) -> str:
    return (f"{name:28s} p50 {statistics.median(values):8.1f}  p90 {percentile(values, 0.9):8.1f}"
            f"  p99 {percentile(values, 0.99):8.1f} ms")


async def _record_times(bootstrap: str, events: str, deliveries: str,
                        wanted: set[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Each wanted event's CreateTime in `events` and its task's in `deliveries`."""
    consumer = AIOKafkaConsumer(events, deliveries, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    created: dict[str, float] = {}
    routed: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (wanted <= created.keys() and
                                                   wanted <= routed.keys()):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    value = json.loads(record.value)
                    if tp.topic == events:
                        created[value["id"]] = record.timestamp / 1000
                    else:
                        routed[value["event_id"]] = record.timestamp / 1000
    finally:
        await consumer.stop()
    return created, routed


async def run(rate: float, seconds: float, flood: int = 0) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="hookbus-hops-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        receiver = CountingReceivers()
        await receiver.start()
        slow = CountingReceivers(slow_seconds=5.0)
        await slow.start()
        bench = Bench(broker, workdir)
        try:
            stack = await bench.stack()
            try:
                # Beside a flood, make bench's quiet app (another partition than the flood's).
                app, path = (QUIET_APP if flood else "app_hops"), "/hops"
                async with aiohttp.ClientSession() as http:
                    await bench.warmed_endpoint(http, stack, receiver, app, path, WARM)
                    if flood:
                        for n in range(8):
                            await bench.subscribe(http, stack, slow.url(f"/slow{n}"), NOISY_APP)
                    await asyncio.sleep(5)
                    if flood:
                        await bench.publish_batches(http, stack, NOISY_APP, flood)
                    sent = await _paced(bench, http, f"{stack.ingest_url}/v1/apps/{app}/events",
                                        app, rate, seconds)
                    await wait_for(lambda: all((path, i) in receiver.arrivals for i in sent), 120)
                assert bench.topics is not None
                created, routed = await _record_times(broker.bootstrap, bench.topics.events,
                                                      bench.topics.deliveries, set(sent))
            finally:
                await bench.stop(stack)
        finally:
            await receiver.stop()
            await slow.stop()
            await asyncio.to_thread(broker.stop)
    # The receiver notes arrivals on the monotonic clock; the records carry wall time.
    offset = time.time() - time.monotonic()
    hops: dict[str, list[float]] = {name: [] for name in (
        "publish -> events record", "events -> deliveries record", "deliveries -> receipt",
        "publish -> receipt", "publish round trip")}
    for event_id, (at, answered) in sent.items():
        received = receiver.first(path, event_id) + offset
        hops["publish -> events record"].append((created[event_id] - at) * 1000)
        hops["events -> deliveries record"].append((routed[event_id] - created[event_id]) * 1000)
        hops["deliveries -> receipt"].append((received - routed[event_id]) * 1000)
        hops["publish -> receipt"].append((received - at) * 1000)
        hops["publish round trip"].append((answered - at) * 1000)
    return hops


async def _paced(bench: Bench, http: aiohttp.ClientSession, url: str, app: str, rate: float,
                 seconds: float) -> dict[str, tuple[float, float]]:
    """Single publishes at `rate` for `seconds`: each event's id -> (sent, answered), wall time."""
    headers = bench.headers_for(app)
    sent: dict[str, tuple[float, float]] = {}

    async def one(n: int) -> None:
        at = time.time()
        async with http.post(url, headers=headers,
                             json={"type": "message.received", "data": data_of(n)}) as response:
            sent[(await response.json())["id"]] = (at, time.time())

    begin, n, tasks = time.monotonic(), 0, []
    while time.monotonic() - begin < seconds:
        tasks.append(asyncio.create_task(one(WARM + n)))
        n += 1
        await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--flood", type=int, default=0, metavar="N",
                        help="another app publishes N events to 8 slow endpoints first")
    args = parser.parse_args()
    hops = asyncio.run(run(args.rate, args.seconds, args.flood))
    beside = f", beside a flood of {args.flood} events to 8 slow endpoints" if args.flood else ""
    print(f"{len(hops['publish -> receipt'])} events at {args.rate:g}/s{beside}")
    for name, values in hops.items():
        print(_row(name, values))


if __name__ == "__main__":
    main()
