"""Router throughput with few and with many subscriptions loaded.

    python -m bench.routing [--events 20000] [--subs 10,100000]

For each subscription count N it starts from empty topics on a private broker,
writes N webhooks straight to the `webhooks` topic (one of them matches the
benchmark app's events; the others belong to other apps or other types), writes
the events straight to `events`, then runs the router process and waits for
every delivery task. Throughput is events divided by the time between the first
and the last delivery task (their Kafka timestamps), so start-up and the
loading of the webhooks are not counted; the router's resident memory is read
when it is done."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.broker import ROOT, Broker, free_port
from schemas.events import Event
from schemas.webhooks import Webhook
from services.common.secrets import generate_secret
from services.common.topics import Topics, ensure_topics
from services.common.triggers import SUBSCRIBABLE_TYPES

PARTITIONS = 6
BENCH_APP = "app_bench"
_encoder = msgspec.json.Encoder()


def webhooks(count: int) -> list[Webhook]:
    """`count` webhooks; exactly one receives `message.received` of BENCH_APP."""
    now = datetime.now(UTC)
    rng = random.Random(count)
    others = sorted(SUBSCRIBABLE_TYPES - {"message.received"})

    def hook(n: int, app_id: str, triggers: list[str]) -> Webhook:
        return Webhook(id=f"wh_{n:07d}", app_id=app_id, target="https://example.com/h",
                       triggers=triggers, secret=generate_secret(), created_at=now,
                       updated_at=now)

    hooks = [hook(0, BENCH_APP, ["message.received"])]
    for n in range(1, count):
        if n % 10 == 0:  # the benchmark app has other subscriptions too
            hooks.append(hook(n, BENCH_APP, [rng.choice(others)]))
        else:
            hooks.append(hook(n, f"app_{n % 10_000}", [rng.choice(others + ["*", "message"])]))
    return hooks


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        for start in range(0, len(records), 5000):
            sent = [await producer.send(topic, value, key=key)
                    for key, value in records[start:start + 5000]]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def delivery_timestamps(bootstrap: str, topic: str, expected: int,
                              timeout: float) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        stamps: list[int] = []
        deadline = time.monotonic() + timeout
        while len(stamps) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(stamps)} of {expected} delivery tasks after {timeout}s")
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                stamps += [r.timestamp for r in batch]
        return stamps
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def run_once(broker: Broker, subscriptions: int, events: int, workdir: Path,
                   prefix: str | None = None) -> dict:
    topics = Topics(prefix or f"bench{subscriptions}.")
    await ensure_topics(broker.bootstrap, topics.specs(), partitions=PARTITIONS)
    hooks = webhooks(subscriptions)
    await produce(broker.bootstrap, topics.webhooks,
                  [(h.id.encode(), _encoder.encode(h)) for h in hooks])
    now = datetime.now(UTC)
    await produce(broker.bootstrap, topics.events, [
        (BENCH_APP.encode(), _encoder.encode(Event(
            id=f"evt_{n}", type="message.received", app_id=BENCH_APP, created_at=now,
            data={"text": "x" * 200, "n": n})))
        for n in range(events)
    ])
    env = os.environ | {
        "HOOKBUS_KAFKA_BOOTSTRAP": broker.bootstrap, "HOOKBUS_TOPIC_PREFIX": topics.prefix,
        "HOOKBUS_METRICS_PORT": str(free_port()), "HOOKBUS_LOG_LEVEL": "WARNING",
        "HOOKBUS_ROUTER_DATA_DIR": str(workdir / f"router{subscriptions}"),
    }
    with open(workdir / f"router{subscriptions}.log", "wb") as log:
        router = subprocess.Popen([sys.executable, "-m", "services.router"], env=env, cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        stamps = await delivery_timestamps(broker.bootstrap, topics.deliveries, events, 600)
        memory = rss_mb(router.pid)
        fields = Path(f"/proc/{router.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        router.terminate()
        router.wait(60)
    seconds = (max(stamps) - min(stamps)) / 1000
    return {"subscriptions": subscriptions, "events": events, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds, 1), "router_rss_mb": round(memory, 1),
            # start-up and the loading of the webhooks included
            "router_cpu_s": round(cpu, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--subs", default="10,100000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "kafka", free_port())
        broker.start()
        try:
            for count in (int(c) for c in args.subs.split(",")):
                result = await run_once(broker, count, args.events, Path(tmp))
                print(json.dumps(result), flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
