"""`python -m bench.router`: what the router costs and how long its hop takes,
to compare router versions or settings side by side on a noisy machine.

    python -m bench.router [--repeats 3] [--events 5000] [--seconds 10]
        [--variant NAME[@CHECKOUT][:VAR=value,...]] ...

Each variant is a router (this checkout's, or the one in CHECKOUT, e.g. an
earlier commit unpacked with `git archive HEAD | tar -x -C DIR`) with extra
environment variables for the stack (not HOOKBUS_LOG_LEVEL, which the bench
sets); the variants run interleaved, one fresh stack (event log, ingest,
router, deliverer, as `make bench`) each per repeat, on one private broker, so
that a change of the machine's load hits them alike. Per run:

- burst: `make bench`'s burst (after a warm-up of 500, 5,000 events with a
  257-byte `data` by 50 concurrent single-event POSTs to one endpoint); the
  router's CPU per delivery (user + system from /proc, over the burst), and
  every process's;
- hop at 100/s: single events at 100/s for `--seconds` (open loop, once the
  stack settled after the burst); per event, from the records' CreateTime:
  publish -> `events` record, `events` record -> delivery task record (the
  router's hop), task record -> receipt, and publish -> receipt. Baseline: a
  plain aiokafka consumer in this process, reading `events` read_committed,
  receipt minus CreateTime (the floor any consumer of `events` sees here);
- at rest: the router's CPU-ms/s over 10 s after the hop.

Prints each run and a summary (median, min, max per variant), with the load
average and the CPU that other processes used; writes the whole to
bench/results/router-<time>.json. A run that fails is reported and its logs
kept (`--keep` keeps every run's). For one stack's hops alone, see
`python -m bench.hops`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.run import (
    PUBLISHERS,
    RESULTS,
    Bench,
    CountingReceivers,
    Meter,
    data_of,
    percentile,
    settle,
    wait_for,
)
from devtools.broker import Broker, free_port
from devtools.processes import Stack

WARM_UP = 500
HOPS = ("publish->event", "event->task (router)", "task->receipt", "publish->receipt",
        "event visible (plain consumer)")
# Runs the router from another checkout: `python -c RUN_FROM -m services.router`.
RUN_FROM = ("import os, runpy, sys; os.chdir({root!r}); sys.path[0:1] = [{root!r}]; "
            "sys.argv = ['services.router']; "
            "runpy.run_module('services.router', run_name='__main__', alter_sys=True)")


@dataclass
class Variant:
    name: str
    checkout: Path | None = None  # None: this one
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        head, _, settings = text.partition(":")
        name, _, checkout = head.partition("@")
        env = dict(pair.split("=", 1) for pair in settings.split(",") if pair)
        return cls(name, Path(checkout).resolve() if checkout else None, env)


class RouterBench(Bench):
    """`make bench`'s stack, with the router of `variant`."""

    variant: Variant = Variant("current")

    def _start(self, stack: Stack, service: str, name: str | None = None) -> None:
        if service == "router" and self.variant.checkout is not None:
            stack.start(service, name,
                        wrap=("-c", RUN_FROM.format(root=str(self.variant.checkout))))
            return
        super()._start(stack, service, name)


def distribution(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(statistics.median(values), 2),
            "p90": round(percentile(values, 0.9), 2), "p99": round(percentile(values, 0.99), 2)}


async def floor_consumer(bootstrap: str, topic: str, seen: dict[str, float],
                         ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Receipt time of every `events` record from now on, by event id, minus
    its CreateTime, as a plain read_committed consumer sees it."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="latest")
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)  # at the end now
        ready.set()
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in got.values():
                for record in records:
                    event_id = json.loads(record.value)["id"]
                    seen[event_id] = (now - record.timestamp / 1000) * 1000
    finally:
        await consumer.stop()


async def record_times(bootstrap: str, topics: tuple[str, str], ids: set[str],
                       timeout: float = 30) -> tuple[dict[str, float], dict[str, float]]:
    """CreateTime (s) of each event's `events` record and of its first task."""
    events_topic, deliveries_topic = topics
    consumer = AIOKafkaConsumer(events_topic, deliveries_topic, bootstrap_servers=bootstrap,
                                group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    events: dict[str, float] = {}
    tasks: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout
        while (not ids <= events.keys() or not ids <= tasks.keys()) \
                and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    value = json.loads(record.value)
                    if tp.topic == events_topic:
                        events.setdefault(value["id"], record.timestamp / 1000)
                    else:
                        tasks.setdefault(value["event_id"], record.timestamp / 1000)
    finally:
        await consumer.stop()
    return events, tasks


async def one_run(bench: RouterBench, receiver: CountingReceivers, run: int, count: int,
                  seconds: float) -> dict:
    out: dict = {"variant": bench.variant.name, "load_avg_1m_before": os.getloadavg()[0]}
    stack = await bench.stack(**bench.variant.env)
    app, path = f"app_router{run}", f"/router{run}"
    pids = bench.pids(stack)
    try:
        connector = aiohttp.TCPConnector(limit=PUBLISHERS + 50)
        async with aiohttp.ClientSession(connector=connector) as http:
            await bench.warmed_endpoint(http, stack, receiver, app, path, WARM_UP)
            await settle(pids)

            meter = Meter(pids).start()
            ids, started = await bench.publish_concurrently(http, stack, app, count, WARM_UP)
            await wait_for(lambda: receiver.counts[path] >= WARM_UP + count, 600)
            cpu = meter.stop()
            last = max(receiver.first(path, i) for i in ids)
            out["burst_per_s"] = round(count / (last - started), 1)
            out["router_cpu_ms_per_delivery"] = round(cpu["by_process"]["router"] * 1000 / count, 3)
            out["stack_cpu_ms_per_delivery"] = round(cpu["stack_cpu_s"] * 1000 / count, 3)
            out["burst_cpu_s_by_process"] = {k: round(v, 2) for k, v in cpu["by_process"].items()}
            out["burst_other_cpu_ms_per_s"] = round(cpu["other_cpu_s"] * 1000 / cpu["seconds"])
            out["burst_load_avg_1m_before"] = round(cpu["load_avg_1m_before"], 2)

            out["hop_settled_after_s"] = round(await settle(pids), 1)
            hops, hop_cpu = await hop_latency(bench, stack, http, receiver, app, path, seconds)
            out["hops_ms"] = {name: distribution(values) for name, values in hops.items()}
            out["hop_router_cpu_ms_per_event"] = round(
                hop_cpu["by_process"]["router"] * 1000 / len(hops[HOPS[1]]), 3)
            out["hop_other_cpu_ms_per_s"] = round(hop_cpu["other_cpu_s"] * 1000
                                                  / hop_cpu["seconds"])

            await asyncio.sleep(5.0)
            meter = Meter(pids).start()
            await asyncio.sleep(10.0)
            rest = meter.stop()
            out["router_idle_cpu_ms_per_s"] = round(
                rest["by_process"]["router"] * 1000 / rest["seconds"], 1)
    finally:
        await bench.stop(stack)
    out["load_avg_1m_after"] = os.getloadavg()[0]
    router = out["hops_ms"][HOPS[1]]
    print(f"  {out['variant']}: burst {out['burst_per_s']}/s, router "
          f"{out['router_cpu_ms_per_delivery']} CPU-ms/delivery (stack "
          f"{out['stack_cpu_ms_per_delivery']}); router hop p50/p90/p99 {router['p50']}/"
          f"{router['p90']}/{router['p99']} ms (plain consumer p50/p99 "
          f"{out['hops_ms'][HOPS[4]]['p50']}/{out['hops_ms'][HOPS[4]]['p99']}); idle "
          f"{out['router_idle_cpu_ms_per_s']} CPU-ms/s; load {out['load_avg_1m_before']:.2f}, "
          f"others {out['burst_other_cpu_ms_per_s']} CPU-ms/s in the burst", flush=True)
    return out


async def hop_latency(bench: RouterBench, stack: Stack, http: aiohttp.ClientSession,
                      receiver: CountingReceivers, app: str, path: str,
                      seconds: float, rate: float = 100.0) -> tuple[dict[str, list[float]], dict]:
    assert bench.topics is not None
    seen: dict[str, float] = {}
    ready, stop = asyncio.Event(), asyncio.Event()
    floor = asyncio.create_task(floor_consumer(bench.broker.bootstrap, bench.topics.events,
                                               seen, ready, stop))
    await asyncio.wait_for(ready.wait(), 30)
    headers = bench.headers_for(app)
    url = f"{stack.ingest_url}/v1/apps/{app}/events"
    sent: dict[str, float] = {}

    async def one(n: int) -> None:
        at = time.time()
        async with http.post(url, headers=headers,
                             json={"type": "message.received", "data": data_of(n)}) as r:
            sent[(await r.json())["id"]] = at

    meter = Meter(bench.pids(stack)).start()
    begin, n, tasks = time.monotonic(), 0, []
    while time.monotonic() - begin < seconds:
        tasks.append(asyncio.create_task(one(1_000_000 + n)))
        n += 1
        await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    await wait_for(lambda: all((path, i) in receiver.arrivals for i in sent), 120)
    cpu = meter.stop()
    stop.set()
    await floor
    events, task_times = await record_times(
        bench.broker.bootstrap, (bench.topics.events, bench.topics.deliveries), set(sent))
    wall = time.time() - time.monotonic()
    hops: dict[str, list[float]] = {name: [] for name in HOPS}
    for event_id, at in sent.items():
        received = receiver.first(path, event_id) + wall
        hops[HOPS[0]].append((events[event_id] - at) * 1000)
        hops[HOPS[1]].append((task_times[event_id] - events[event_id]) * 1000)
        hops[HOPS[2]].append((received - task_times[event_id]) * 1000)
        hops[HOPS[3]].append((received - at) * 1000)
        if event_id in seen:
            hops[HOPS[4]].append(seen[event_id])
    return hops, cpu


def summary(runs: list[dict]) -> dict:
    def spread(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
                "max": round(max(values), 2)}

    by_variant: dict[str, dict] = {}
    for name in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == name]
        figures = {key: spread([run[key] for run in mine]) for key in (
            "router_cpu_ms_per_delivery", "stack_cpu_ms_per_delivery", "burst_per_s",
            "hop_router_cpu_ms_per_event", "router_idle_cpu_ms_per_s",
            "burst_other_cpu_ms_per_s", "load_avg_1m_before")}
        for hop in HOPS:
            for q in ("p50", "p90", "p99"):
                figures[f"{hop} {q}"] = spread([run["hops_ms"][hop][q] for run in mine])
        by_variant[name] = figures
    return by_variant


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep every run's logs")
    parser.add_argument("--variant", action="append", type=Variant.parse,
                        help="NAME[@CHECKOUT][:VAR=value,...]; default: this checkout")
    args = parser.parse_args()
    variants: list[Variant] = args.variant or [Variant("current")]
    runs: list[dict] = []
    failed: list[dict] = []
    began = datetime.now(UTC)
    tmp = Path(tempfile.mkdtemp(prefix="hookbus-bench-router-"))
    broker = Broker(tmp / "kafka", free_port(), free_port())
    await asyncio.to_thread(broker.start)
    receiver = CountingReceivers()
    await receiver.start()
    bench = RouterBench(broker, tmp)
    try:
        for repeat in range(args.repeats):
            for variant in variants:
                bench.variant = variant
                print(f"repeat {repeat + 1}, {variant.name}", flush=True)
                try:
                    runs.append(await one_run(bench, receiver, len(runs) + len(failed),
                                              args.events, args.seconds))
                except (TimeoutError, KeyError) as exc:  # reported, and the others go on
                    logs = tmp / f"run{bench.runs}"
                    failed.append({"variant": variant.name, "error": repr(exc),
                                   "logs": str(logs)})
                    print(f"  {variant.name} FAILED: {exc!r}; its logs stay in {logs}",
                          flush=True)
    finally:
        await receiver.stop()
        await asyncio.to_thread(broker.stop)
    if failed or args.keep:
        print(f"logs: {tmp}/run*/")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"at": began.isoformat(timespec="seconds"), "events": args.events,
              "seconds": args.seconds, "cpus": os.cpu_count(),
              "variants": [{"name": v.name, "checkout": str(v.checkout or "."), "env": v.env}
                           for v in variants],
              "summary": summary(runs), "runs": runs, "failed": failed}
    out = RESULTS / f"router-{began:%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, figures in result["summary"].items():
        print(f"{name}:")
        for key, value in figures.items():
            print(f"  {key:40s} {value['median']:>9} ({value['min']}–{value['max']})")
    print(f"written to {out}")


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the stack and the broker are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())
