"""`make bench`: Hookbus's speed, each scenario repeated (3 times, interleaved
with its baseline) and reported as median, min and max.

Starts a broker of its own and, per repeat, fresh topics and the whole stack
(event log, ingest, router, deliverer) on loopback, with the default retry
schedule; counts and times are bounded. Every Hookbus process's CPU, the
broker's JVM included, is read from /proc. Writes bench/results/latest.json
(figures as numbers: the medians; `spread` holds min, max and every value), a
dated copy, and latest.png.

- burst (`burst_per_s`): after a warm-up, 5,000 events with a 257-byte `data`
  published by 50 concurrent single-event POSTs to one healthy endpoint, from
  the first publish to the last distinct delivery; `burst_deferred` the tasks
  written to a retry tier meanwhile (goal 0); `cpu_ms_per_delivery` every
  Hookbus process's CPU (broker included) over the burst, per delivery;
  `burst_cpu_share` the stack's share of all cores meanwhile (1.0: every core
  busy with Hookbus), `burst_machine_busy_share` the whole machine's (the
  load generator and receiver, this process, and anything else running).
  Baseline: a plain aiohttp client POSTing the same bodies to the same receiver
  with the same concurrency (`raw_http_per_s`);
- latency: single publishes at 100/s and at half the repeat's burst rate (open
  loop), publish to receipt (`p50_ms_at_100`, `p99_ms_at_100`,
  `p99_ms_at_half`), each once the stack has settled (below 150 CPU-ms/s, at
  most 30 s: the event log files the burst after it). Baseline: the same pace
  POSTed straight to the receiver;
- at rest (`idle_cpu_ms_per_s`): the whole stack's CPU over 10 s, 10 s after
  the warm-up, per process in `idle_cpu_by_process`; and the same 5 s after the
  scenarios above (`idle_after_load_…`: the event log may still be filing);
- noisy neighbour (`neighbour_p99_ratio`): one app's p99 at 20/s while another
  app floods eight slow endpoints (answering after 5 s), over the same p99
  without the flood (same stack, measured just before);
- scale-out (`scale_out`): deliveries/s to 50 endpoints that answer after 1 s
  (five apps of ten webhooks) with 1, 2 and 4 deliverer replicas in one
  consumer group, each replica at most 50 attempts in flight (so that the
  replicas bound the rate, not the publishing and routing on shared cores);
- subscriptions: router throughput with 10 and 100,000 subscriptions loaded, and
  its resident memory (see bench/routing.py; once with --quick);
- the event log (issue 11): on a broker of its own (see bench/eventlog.py),
  under "event_log".

Each repeat records the load it ran under: the 1-minute load average before it
and the CPU that other processes of the machine used meanwhile."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import eventlog, routing
from devtools.broker import ROOT, Broker, free_port
from devtools.processes import Stack
from devtools.receivers import Receivers
from services.common.topics import Topics, ensure_topics
from services.ingest.auth import issue_token

SECRET = "bench-secret-of-at-least-32-bytes!!"
QUIET_APP, NOISY_APP = "app_quiet", "app_noisy"
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_TIERS = (5, 300, 1800, 7200, 18000, 36000)  # HOOKBUS_RETRY_SCHEDULE's default tiers
PUBLISHERS = 50     # concurrent single-event POSTs of the burst
DATA_BYTES = 257    # the burst's `data`, as compact JSON
SCALE_OUT_IN_FLIGHT = 50  # attempts in flight per deliverer in the scale-out
SCENARIOS = ("main", "neighbour", "scale_out", "subs", "event_log")
# Goals of issue 13 (targets to read the figures against, not assertions).
GOALS = {"burst_deferred": ("≤", 0), "cpu_ms_per_delivery": ("≤", 2.0),
         "p99_ms_at_100": ("≤", 15), "p99_ms_at_half": ("≤", 50),
         "idle_cpu_ms_per_s": ("≤", 30), "neighbour_p99_ratio": ("≤", 2),
         "router_rss_mb_100k": ("≤", 150)}


# -- /proc ---------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def self_cpu_s() -> float:
    """This process's CPU seconds: the load generator and the receivers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


class Meter:
    """CPU of every Hookbus process (the broker's JVM and each service
    instance) between `start` and `stop`, and what the rest of the machine
    used meanwhile."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def _read(self) -> tuple[float, dict[str, float], float, float]:
        return (time.monotonic(), {name: cpu_s(pid) for name, pid in self.pids.items()},
                self_cpu_s(), machine_busy_s())

    def start(self) -> Meter:
        self._begin = self._read()
        self.load_avg_1m = os.getloadavg()[0]
        return self

    def stop(self) -> dict:
        t1, cpu1, own1, busy1 = self._read()
        t0, cpu0, own0, busy0 = self._begin
        by_process = {name: cpu1[name] - cpu0[name] for name in self.pids}
        stack, bench = sum(by_process.values()), own1 - own0
        return {"seconds": t1 - t0, "stack_cpu_s": stack, "by_process": by_process,
                "bench_cpu_s": bench, "other_cpu_s": max(0.0, busy1 - busy0 - stack - bench),
                "load_avg_1m_before": self.load_avg_1m}


# -- the receivers -------------------------------------------------------------------
class CountingReceivers(Receivers):
    """Receivers that also count distinct arrivals per path, so waiting for a
    count costs the load generator nothing."""

    def __init__(self, slow_seconds: float = 1.0) -> None:
        super().__init__(slow_seconds)
        self.counts: dict[str, int] = defaultdict(int)

    async def _handle(self, request):  # type: ignore[no-untyped-def]
        response = await super()._handle(request)
        if len(self.arrivals[(request.path, request.headers.get("webhook-id", ""))]) == 1:
            self.counts[request.path] += 1
        return response


async def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the scenario did not finish in time")
        await asyncio.sleep(0.05)


def data_of(n: int) -> dict:
    """A `data` of exactly DATA_BYTES as compact JSON."""
    bare = len(json.dumps({"n": n, "text": ""}, separators=(",", ":")))
    return {"n": n, "text": "x" * (DATA_BYTES - bare)}


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """An idle topic still costs the broker: leave none behind."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        gone = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if gone:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# -- the stack -----------------------------------------------------------------------
class Bench:
    def __init__(self, broker: Broker, workdir: Path, profile_to: Path | None = None) -> None:
        """`profile_to`: run router and deliverer under pyinstrument, reports there."""
        self.broker = broker
        self.workdir = workdir
        self.profile_to = profile_to
        self.runs = 0
        self.topics: Topics | None = None

    @staticmethod
    def headers_for(app: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(SECRET, scope='app', app_id=app)}"}

    async def stack(self, *, deliverers: int = 1, tiers: Iterable[float] = DEFAULT_TIERS,
                    eventlog: bool = True, **env: str) -> Stack:
        """Fresh topics and the services (the event log first, so that ingest
        knows it); `stop` deletes the topics again."""
        self.runs += 1
        tiers = tuple(tiers)
        self.topics = Topics(f"bench{self.runs}.", tiers)
        await ensure_topics(self.broker.bootstrap, self.topics.specs(), partitions=6)
        log_dir = self.workdir / f"run{self.runs}"
        log_dir.mkdir(parents=True, exist_ok=True)
        stack = Stack(self.broker.bootstrap, self.topics.prefix, log_dir,
                      HOOKBUS_JWT_SECRET=SECRET, HOOKBUS_ALLOW_HTTP="true",
                      HOOKBUS_ALLOWED_PRIVATE_CIDRS="127.0.0.0/8",
                      HOOKBUS_RETRY_SCHEDULE=",".join(f"{t:g}s" for t in tiers),
                      HOOKBUS_LOG_LEVEL="WARNING", **env)
        services = (["eventlog"] if eventlog else []) + ["ingest", "router"]
        for service in services:
            self._start(stack, service)
            if service == "eventlog":
                await stack.wait_ready(120)
        for n in range(deliverers):
            self._start(stack, "deliverer", "deliverer" if n == 0 else f"deliverer-{n + 1}")
        await stack.wait_ready(180)
        return stack

    def _start(self, stack: Stack, service: str, name: str | None = None) -> None:
        wrap: tuple[str, ...] = ()
        if self.profile_to is not None and service != "eventlog":
            report = self.profile_to / f"{name or service}.txt"
            wrap = ("-m", "pyinstrument", "-r", "text", "-o", str(report))
        stack.start(service, name, wrap=wrap)

    async def stop(self, stack: Stack) -> None:
        await asyncio.to_thread(stack.stop)
        if self.topics is not None:
            await delete_topics(self.broker.bootstrap, self.topics.prefix)

    def pids(self, stack: Stack) -> dict[str, int]:
        pids = {"broker": self.broker.pid}
        pids.update({name: s.process.pid for name, s in stack.services.items()})
        return pids

    async def tier_records(self) -> int:
        """Records in the retry tiers so far."""
        assert self.topics is not None
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.bootstrap)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for topic in self.topics.retry_tiers.values()
                          for p in range(6)]
            return sum((await consumer.end_offsets(partitions)).values())
        finally:
            await consumer.stop()

    async def subscribe(self, http: aiohttp.ClientSession, stack: Stack, url: str,
                        app: str) -> None:
        async with http.post(f"{stack.ingest_url}/v1/apps/{app}/webhooks",
                             headers=self.headers_for(app),
                             json={"target": url, "triggers": ["*"]}) as response:
            assert response.status == 201, await response.text()

    async def warmed_endpoint(self, http: aiohttp.ClientSession, stack: Stack,
                              receiver: CountingReceivers, app: str, path: str,
                              warm: int) -> None:
        """Subscribe `app` to `path` on `receiver`, let the stack see the webhook,
        and deliver `warm` events the way the measurements will (50 publishers)."""
        await self.subscribe(http, stack, receiver.url(path), app)
        await asyncio.sleep(1.5)
        await self.publish_concurrently(http, stack, app, warm)
        await wait_for(lambda: receiver.counts[path] >= warm, 120)

    async def publish_batches(self, http: aiohttp.ClientSession, stack: Stack, app: str,
                              count: int) -> None:
        """`count` events of `app` in batch POSTs of 500 (a flood)."""
        events = [{"type": "message.received", "data": data_of(n)} for n in range(count)]
        for start in range(0, count, 500):
            async with http.post(f"{stack.ingest_url}/v1/apps/{app}/events/batch",
                                 headers=self.headers_for(app),
                                 json={"events": events[start:start + 500]}) as response:
                assert response.status == 202, await response.text()

    async def publish_concurrently(self, http: aiohttp.ClientSession, stack: Stack, app: str,
                                   count: int, first: int = 0) -> tuple[list[str], float]:
        """`count` single-event POSTs by PUBLISHERS concurrent clients; the
        events' ids and when the first was sent."""
        headers = self.headers_for(app)
        numbers = iter(range(first, first + count))
        ids: list[str] = []
        url = f"{stack.ingest_url}/v1/apps/{app}/events"

        async def publisher() -> None:
            for n in numbers:
                async with http.post(url, headers=headers, json={
                        "type": "message.received", "data": data_of(n)}) as response:
                    assert response.status == 202, await response.text()
                    ids.append((await response.json())["id"])

        started = time.monotonic()
        await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
        return ids, started

    async def paced(self, http: aiohttp.ClientSession, url: str, receiver: CountingReceivers,
                    path: str, rate: float, seconds: float, app: str | None) -> list[float]:
        """Single POSTs at `rate` for `seconds` (open loop) to ingest (`app`) or
        straight to the receiver (None); the milliseconds from each to its first
        arrival at `path`."""
        sent: dict[str, float] = {}
        headers = self.headers_for(app) if app else {"Content-Type": "application/json"}

        async def one(n: int) -> None:
            at = time.monotonic()
            if app is None:
                wid = f"raw_{path}_{n}"
                async with http.post(url, headers={**headers, "webhook-id": wid},
                                     data=json.dumps(data_of(n))) as r:
                    await r.read()
                sent[wid] = at
                return
            async with http.post(url, headers=headers,
                                 json={"type": "message.received", "data": data_of(n)}) as r:
                sent[(await r.json())["id"]] = at

        begin, n, tasks = time.monotonic(), 0, []
        while time.monotonic() - begin < seconds:
            tasks.append(asyncio.create_task(one(n)))
            n += 1
            await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)
        await wait_for(lambda: all((path, i) in receiver.arrivals for i in sent), 120)
        return [(receiver.first(path, i) - at) * 1000 for i, at in sent.items()]


async def raw_http(receiver: CountingReceivers, path: str, count: int) -> float:
    """The baseline of the burst: the same bodies POSTed straight to the
    receiver by PUBLISHERS concurrent clients."""
    numbers = iter(range(count))
    connector = aiohttp.TCPConnector(limit=PUBLISHERS)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            for n in numbers:
                async with http.post(receiver.url(path), data=json.dumps(data_of(n)),
                                     headers={"webhook-id": f"raw_{n}",
                                              "Content-Type": "application/json"}) as response:
                    await response.read()
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(PUBLISHERS)))
        return count / (time.monotonic() - started)


# -- the scenarios -------------------------------------------------------------------
async def main_scenario(bench: Bench, receiver: CountingReceivers, repeat: int, count: int,
                        warm: int, seconds: float, burst_only: bool = False) -> dict:
    """One repeat of the burst, the latencies and the stack at rest, on a fresh
    stack, each beside its baseline."""
    out: dict = {}
    out["raw_http_per_s"] = await raw_http(receiver, f"/raw{repeat}", count)
    stack = await bench.stack()
    app = f"app_bench{repeat}"
    path = f"/burst{repeat}"
    pids = bench.pids(stack)
    try:
        connector = aiohttp.TCPConnector(limit=PUBLISHERS + 50)
        async with aiohttp.ClientSession(connector=connector) as http:
            await bench.warmed_endpoint(http, stack, receiver, app, path, warm)
            out.update(await at_rest(pids, settle=10.0))
            tiers_before = await bench.tier_records()
            meter = Meter(pids).start()
            ids, started = await bench.publish_concurrently(http, stack, app, count, warm)
            await wait_for(lambda: receiver.counts[path] >= warm + count, 600)
            cpu = meter.stop()
            last = max(receiver.first(path, i) for i in ids)
            out["burst_per_s"] = count / (last - started)
            out["burst_deferred"] = await bench.tier_records() - tiers_before
            out["cpu_ms_per_delivery"] = cpu["stack_cpu_s"] * 1000 / count
            out["burst_cpu_s_by_process"] = cpu["by_process"]
            # How busy the cores were (goal: busy, not waiting): the stack's
            # share of all cores over the burst, and the whole machine's.
            cores = os.cpu_count() or 1
            out["burst_cpu_share"] = cpu["stack_cpu_s"] / (cpu["seconds"] * cores)
            out["burst_machine_busy_share"] = (cpu["stack_cpu_s"] + cpu["bench_cpu_s"] +
                                               cpu["other_cpu_s"]) / (cpu["seconds"] * cores)
            out["burst_load"] = _load(cpu)
            print(f"  burst {out['burst_per_s']:.0f}/s (raw {out['raw_http_per_s']:.0f}/s), "
                  f"{out['burst_deferred']} deferred, {out['cpu_ms_per_delivery']:.2f} CPU-ms "
                  f"per delivery, cores {out['burst_cpu_share']:.0%} busy with Hookbus "
                  f"({out['burst_machine_busy_share']:.0%} in all); {_brief(cpu)}", flush=True)
            if burst_only:
                return out
            for name, rate in (("100", 100.0), ("half", out["burst_per_s"] / 2)):
                # What the burst left (the event log filing it, say) is not this load's.
                out[f"latency_{name}_settled_after_s"] = await settle(pids)
                raw = await bench.paced(http, receiver.url(f"/rawlat{repeat}{name}"), receiver,
                                        f"/rawlat{repeat}{name}", rate, seconds, None)
                meter = Meter(pids).start()
                got = await bench.paced(http, f"{stack.ingest_url}/v1/apps/{app}/events",
                                        receiver, path, rate, seconds, app)
                cpu = meter.stop()
                out[f"p50_ms_at_{name}"] = statistics.median(got)
                out[f"p99_ms_at_{name}"] = percentile(got, 0.99)
                out[f"raw_p99_ms_at_{name}"] = percentile(raw, 0.99)
                out[f"latency_{name}_rate_per_s"] = rate
                out[f"latency_{name}_load"] = _load(cpu)
                print(f"  at {rate:.0f}/s: p50 {out[f'p50_ms_at_{name}']:.1f} ms, p99 "
                      f"{out[f'p99_ms_at_{name}']:.1f} ms (straight to the receiver: p99 "
                      f"{out[f'raw_p99_ms_at_{name}']:.1f} ms); {_brief(cpu)}", flush=True)
        after = await at_rest(pids)
        out.update({k.replace("idle_", "idle_after_load_"): v for k, v in after.items()})
    finally:
        await bench.stop(stack)
    return out


async def settle(pids: dict[str, int], below_ms_per_s: float = 150.0,
                 at_most: float = 30.0) -> float:
    """Wait (at most `at_most` seconds) until the stack uses less than
    `below_ms_per_s` CPU-ms/s over a second; returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < at_most:
        meter = Meter(pids).start()
        await asyncio.sleep(1.0)
        cpu = meter.stop()
        if cpu["stack_cpu_s"] * 1000 / cpu["seconds"] < below_ms_per_s:
            break
    return time.monotonic() - began


async def at_rest(pids: dict[str, int], settle: float = 5.0, seconds: float = 10.0) -> dict:
    """The stack's CPU over `seconds` with nothing to do, `settle` seconds from now."""
    await asyncio.sleep(settle)
    meter = Meter(pids).start()
    await asyncio.sleep(seconds)
    cpu = meter.stop()
    out = {"idle_cpu_ms_per_s": cpu["stack_cpu_s"] * 1000 / cpu["seconds"],
           "idle_cpu_by_process": {name: round(value * 1000 / cpu["seconds"], 1)
                                   for name, value in cpu["by_process"].items()},
           "idle_load": _load(cpu)}
    print(f"  at rest: {out['idle_cpu_ms_per_s']:.0f} CPU-ms/s "
          f"{json.dumps(out['idle_cpu_by_process'])}; {_brief(cpu)}", flush=True)
    return out


async def neighbour_scenario(bench: Bench, slow: CountingReceivers, repeat: int, flood: int,
                             seconds: float) -> dict:
    """The quiet app's p99 publish-to-receipt at 20/s alone, then while the
    noisy app's `flood` events fan out to eight slow endpoints."""
    stack = await bench.stack(tiers=(1, 2), eventlog=False)
    pids = bench.pids(stack)
    out: dict = {}
    try:
        async with aiohttp.ClientSession() as http:
            await bench.subscribe(http, stack, slow.url(f"/quiet{repeat}"), QUIET_APP)
            for n in range(8):
                await bench.subscribe(http, stack, slow.url(f"/slow{repeat}_{n}"), NOISY_APP)
            await asyncio.sleep(1.5)
            url = f"{stack.ingest_url}/v1/apps/{QUIET_APP}/events"
            meter = Meter(pids).start()
            alone = await bench.paced(http, url, slow, f"/quiet{repeat}", 20, seconds, QUIET_APP)
            out["neighbour_alone_load"] = _load(meter.stop())
            await bench.publish_batches(http, stack, NOISY_APP, flood)
            meter = Meter(pids).start()
            flooded = await bench.paced(http, url, slow, f"/quiet{repeat}", 20, seconds,
                                        QUIET_APP)
            out["neighbour_load"] = _load(meter.stop())
    finally:
        await bench.stop(stack)
    out["neighbour_alone_p99_ms"] = percentile(alone, 0.99)
    out["neighbour_p99_ms"] = percentile(flooded, 0.99)
    out["neighbour_p99_ratio"] = out["neighbour_p99_ms"] / out["neighbour_alone_p99_ms"]
    print(f"  quiet app p99 {out['neighbour_alone_p99_ms']:.1f} ms alone, "
          f"{out['neighbour_p99_ms']:.1f} ms beside the flood", flush=True)
    return out


async def scale_out_scenario(bench: Bench, slow: CountingReceivers, repeat: int,
                             events: int) -> dict:
    """Deliveries/s to 50 endpoints that answer after 1 s (five apps of ten, the
    most an app may have by default), `events` events per app, with 1, 2 and 4
    deliverers in one group (replicas added to the same stack, each count
    measured once the group has rebalanced). Each replica runs at most
    SCALE_OUT_IN_FLIGHT attempts at once, so that what bounds the rate is the
    replicas (50/s each at 1 s per attempt), not the rate at which two cores
    shared by the whole stack publish and route: with the default 200, one
    replica already took all that came (171-211/s whatever the count)."""
    stack = await bench.stack(tiers=(1, 2), eventlog=False,
                              HOOKBUS_MAX_IN_FLIGHT=str(SCALE_OUT_IN_FLIGHT))
    apps = {f"app_scale{repeat}_{a}": [f"/slowscale{repeat}_{a}_{n}" for n in range(10)]
            for a in range(5)}
    paths = [path for app_paths in apps.values() for path in app_paths]
    out: dict = {}
    try:
        async with aiohttp.ClientSession() as http:
            for app, app_paths in apps.items():
                for path in app_paths:
                    await bench.subscribe(http, stack, slow.url(path), app)
            await asyncio.sleep(1.5)
            published = 0
            for replicas in (1, 2, 4):
                while sum(1 for s in stack.services.values() if s.service == "deliverer") \
                        < replicas:
                    bench._start(stack, "deliverer", f"deliverer-{len(stack.services)}")
                await stack.wait_ready(180)
                await asyncio.sleep(2.0)  # the older replicas' side of the rebalance
                meter = Meter(bench.pids(stack)).start()
                sent = await asyncio.gather(*(
                    bench.publish_concurrently(http, stack, app, events, published)
                    for app in apps))
                published += events
                expected = published * len(paths)
                await wait_for(lambda: sum(slow.counts[p] for p in paths) >= expected, 600)
                out[f"{replicas}_load"] = _load(meter.stop())
                started = min(at for _, at in sent)
                last = max(slow.first(p, i) for (ids, _), app_paths in
                           zip(sent, apps.values(), strict=True) for p in app_paths for i in ids)
                out[str(replicas)] = events * len(paths) / (last - started)
                print(f"  {replicas} deliverer(s): {out[str(replicas)]:.0f} deliveries/s; "
                      f"{out[f'{replicas}_load']['stack_cpu_s']} CPU-s in all, "
                      f"load {out[f'{replicas}_load']['load_avg_1m_before']:.2f}", flush=True)
    finally:
        await bench.stop(stack)
    return out


def _load(cpu: dict) -> dict:
    return {"seconds": round(cpu["seconds"], 2), "load_avg_1m_before": cpu["load_avg_1m_before"],
            "stack_cpu_s": round(cpu["stack_cpu_s"], 2), "bench_cpu_s": round(cpu["bench_cpu_s"], 2),
            "other_processes_cpu_s": round(cpu["other_cpu_s"], 2)}


def _brief(cpu: dict) -> str:
    return (f"load {cpu['load_avg_1m_before']:.2f}, other processes "
            f"{cpu['other_cpu_s'] * 1000 / max(cpu['seconds'], 0.001):.0f} CPU-ms/s")


# -- the summary ---------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "values": [round(v, 2) for v in values]}


def summarize(repeats: dict[str, list[dict]]) -> dict:
    """Medians as the figures, and every spread beside them."""
    figures: dict = {}
    spreads: dict = {}
    loads: dict = {}
    for scenario, runs in repeats.items():
        if not runs:
            continue
        loads[scenario] = [{k: v for k, v in run.items() if k.endswith("_load")} for run in runs]
        if scenario == "scale_out":
            spreads["scale_out"] = {k: spread([run[k] for run in runs]) for k in runs[0]
                                    if not k.endswith("_load")}
            figures["scale_out"] = {k: s["median"] for k, s in spreads["scale_out"].items()}
            continue
        for key, value in runs[0].items():
            if isinstance(value, (int, float)):
                spreads[key] = spread([run[key] for run in runs])
                figures[key] = spreads[key]["median"]
            elif key.endswith("_by_process"):
                names = value.keys()
                figures[key] = {n: round(statistics.median(run[key][n] for run in runs), 2)
                                for n in names}
    figures["spread"] = spreads
    figures["load"] = loads
    return figures


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    memory = next(int(line.split()[1]) // 1024 for line in
                  Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {"cores": os.cpu_count(), "cpu": model, "memory_mb": memory,
            "python": platform.python_version(), "kernel": platform.release()}


async def run(quick: bool, only: tuple[str, ...] = SCENARIOS, repeats: int = 3) -> dict:
    count = 1000 if quick else 5000
    warm = 200 if quick else 500
    seconds = 5.0 if quick else 20.0
    began, busy0, own0 = time.monotonic(), machine_busy_s(), self_cpu_s()
    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {s: [] for s in SCENARIOS}
    subs: dict[int, list[dict]] = {10: [], 100_000: []}
    with tempfile.TemporaryDirectory(prefix="hookbus-bench-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        receiver = CountingReceivers()
        slow5 = CountingReceivers(slow_seconds=5.0)
        slow1 = CountingReceivers(slow_seconds=1.0)
        for r in (receiver, slow5, slow1):
            await r.start()
        bench = Bench(broker, workdir)
        try:
            for repeat in range(1, repeats + 1):
                if "main" in only:
                    print(f"[{repeat}/{repeats}] burst of {count} events ({PUBLISHERS} "
                          f"publishers) after {warm} to warm up, latency at 100/s and at half "
                          f"the burst rate for {seconds:g}s, the stack at rest", flush=True)
                    results["main"].append(
                        await main_scenario(bench, receiver, repeat, count, warm, seconds))
                if "neighbour" in only:
                    flood = 200 if quick else 1000
                    print(f"[{repeat}/{repeats}] noisy neighbour: one app at 20/s alone, then "
                          f"beside {flood * 8} tasks to 8 slow endpoints", flush=True)
                    results["neighbour"].append(
                        await neighbour_scenario(bench, slow5, repeat, flood, seconds / 2))
                if "scale_out" in only:
                    events = 40 if quick else 60
                    print(f"[{repeat}/{repeats}] scale-out: {events * 50} deliveries to 50 "
                          "endpoints answering after 1 s, 1, 2 and 4 deliverers", flush=True)
                    results["scale_out"].append(
                        await scale_out_scenario(bench, slow1, repeat, events))
                if "subs" in only and (repeat == 1 or not quick):
                    print(f"[{repeat}/{repeats}] subscriptions: the router with 10 and "
                          "100,000 loaded", flush=True)
                    for n in (10, 100_000):
                        prefix = f"subs{repeat}x{n}."
                        (workdir / prefix).mkdir()
                        subs[n].append(await routing.run_once(
                            broker, n, 2000 if quick else 10_000, workdir / prefix, prefix))
                        await delete_topics(broker.bootstrap, prefix)
                        print(f"  {json.dumps(subs[n][-1])}", flush=True)
        finally:
            for r in (receiver, slow5, slow1):
                await r.stop()
            await asyncio.to_thread(broker.stop)
    if subs[10]:
        results["subs"] = [
            {"subs_10_per_s": a["events_per_s"], "subs_100k_per_s": b["events_per_s"],
             "subs_ratio": b["events_per_s"] / a["events_per_s"],
             "router_rss_mb_10": a["router_rss_mb"], "router_rss_mb_100k": b["router_rss_mb"]}
            for a, b in zip(subs[10], subs[100_000], strict=True)]
    result = summarize(results)
    result.update({
        "repeats": repeats, "machine": machine(), "quick": quick,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_s": round(time.monotonic() - began, 1),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_s_bench_process": round(self_cpu_s() - own0, 1),
        "cpu_s_machine_busy": round(machine_busy_s() - busy0, 1),
    })
    if "event_log" in only:
        try:
            result["event_log"] = await eventlog.run(quick)
        except Exception as exc:  # the other figures stand without it
            print(f"event log figures failed: {exc!r}", flush=True)
            result["event_log"] = {"error": repr(exc)}
    return result


# -- the table and the chart ---------------------------------------------------------
ROWS = [
    ("burst to one endpoint, deliveries/s", "burst_per_s", "raw_http_per_s", "plain aiohttp"),
    ("burst tasks deferred to a retry tier", "burst_deferred", None, ""),
    ("share of the cores busy with Hookbus in the burst", "burst_cpu_share",
     "burst_machine_busy_share", "whole machine"),
    ("CPU-ms per delivery (all processes)", "cpu_ms_per_delivery", None, ""),
    ("p50 ms at 100/s", "p50_ms_at_100", "raw_p99_ms_at_100", "p99 straight"),
    ("p99 ms at 100/s", "p99_ms_at_100", "raw_p99_ms_at_100", "p99 straight"),
    ("p99 ms at half the burst rate", "p99_ms_at_half", "raw_p99_ms_at_half", "p99 straight"),
    ("CPU-ms/s at rest (whole stack)", "idle_cpu_ms_per_s", "idle_after_load_cpu_ms_per_s",
     "5 s after the load"),
    ("another app's p99 beside a flood, ratio", "neighbour_p99_ratio", "neighbour_alone_p99_ms",
     "alone, p99 ms"),
    ("router events/s at 100k subs", "subs_100k_per_s", "subs_10_per_s", "at 10 subs"),
    ("router RSS MB at 100k subs", "router_rss_mb_100k", "router_rss_mb_10", "at 10 subs"),
]


def _cell(result: dict, key: str) -> str:
    s = result["spread"].get(key)
    return "—" if s is None else f"{s['median']:g} ({s['min']:g}–{s['max']:g})"


def table(result: dict) -> str:
    lines = ["| figure | median (min–max) | baseline, same run | goal |", "|---|---:|---|---|"]
    for label, key, base, base_label in ROWS:
        if key not in result["spread"]:
            continue
        goal = GOALS.get(key)
        goal_text = ""
        if goal is not None:
            met = result[key] <= goal[1]
            goal_text = f"{goal[0]} {goal[1]}: " + ("met" if met else "**not met**")
        baseline = f"{base_label} {_cell(result, base)}" if base else ""
        lines.append(f"| {label} | {_cell(result, key)} | {baseline} | {goal_text} |")
    if "scale_out" in result:
        cells = ", ".join(f"{n}: {_cell({'spread': result['spread']['scale_out']}, n)}"
                          for n in ("1", "2", "4"))
        lines.append(f"| deliveries/s to 50 endpoints answering after 1 s, by deliverers "
                     f"| {cells} | | |")
    m = result["machine"]
    lines.append(f"\n{m['cores']} cores, {m['cpu']}, {m['memory_mb']} MB, Python {m['python']}, "
                 f"{result['repeats']} repeats, {result['at']}; load average before "
                 f"{result['load_avg_before']}, after {result['load_avg_after']}")
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spreads = result["spread"]
    panels = [
        ("Burst to one endpoint (/s)", [("raw HTTP", "raw_http_per_s"), ("Hookbus", "burst_per_s")]),
        ("CPU-ms per delivery", [("Hookbus", "cpu_ms_per_delivery")]),
        ("Latency (ms)", [("p50 @100", "p50_ms_at_100"), ("p99 @100", "p99_ms_at_100"),
                          ("p99 @half", "p99_ms_at_half")]),
        ("At rest (CPU-ms/s)", [("after warm-up", "idle_cpu_ms_per_s"),
                                ("after load", "idle_after_load_cpu_ms_per_s")]),
        ("Another app's p99 (ms)", [("alone", "neighbour_alone_p99_ms"),
                                    ("beside flood", "neighbour_p99_ms")]),
        ("Router (events/s)", [("10 subs", "subs_10_per_s"), ("100k subs", "subs_100k_per_s")]),
    ]
    if "scale_out" in spreads:
        panels.append(("Scale-out, 1 s endpoints (/s)",
                       [(f"{n} deliv.", ("scale_out", n)) for n in ("1", "2", "4")]))
    panels = [(t, bars) for t, bars in panels
              if all((k[1] in spreads.get(k[0], {})) if isinstance(k, tuple) else k in spreads
                     for _, k in bars)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.8), squeeze=False)
    for axis, (title, bars) in zip(axes[0], panels, strict=True):
        stats = [spreads[k[0]][k[1]] if isinstance(k, tuple) else spreads[k] for _, k in bars]
        medians = [s["median"] for s in stats]
        errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
        axis.bar([label for label, _ in bars], medians, yerr=errors, capsize=4,
                 color=["#8da0cb", "#fc8d62", "#66c2a5"][:len(bars)])
        axis.set_title(title, fontsize=9)
        axis.tick_params(labelsize=8)
        for x, value in enumerate(medians):
            axis.annotate(f"{value:g}", (x, value), ha="center", va="bottom", fontsize=8)
    m = result["machine"]
    figure.suptitle(f"Hookbus make bench: median of {result['repeats']}, bars min–max — "
                    f"{m['cores']} cores, {m['cpu']} — {result['at']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer events, shorter latency runs, subscriptions once")
    parser.add_argument("--only", help=f"comma-separated of {','.join(SCENARIOS)}: runs those "
                        "only and prints their figures (latest.json is left alone, unless all "
                        "but event_log ran: then the last event log figures are kept)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    only = tuple(args.only.split(",")) if args.only else SCENARIOS
    result = asyncio.run(run(args.quick, only, args.repeats))
    latest = RESULTS / "latest.json"
    if args.only and set(only) >= set(SCENARIOS) - {"event_log"} and latest.exists():
        # Everything but the event log: its figures are carried over from the
        # last run that had them, as `python -m bench.eventlog` merges its own.
        result["event_log"] = json.loads(latest.read_text()).get("event_log", {})
        result["event_log_carried_over"] = True
    elif args.only:
        print(json.dumps(result, indent=2))
        print(table(result))
        return
    text = json.dumps(result, indent=2) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"{result['at'][:19].replace(':', '')}.json").write_text(text)
    chart(result, RESULTS / "latest.png")
    print()
    print(table(result))
    if result["event_log"] and "error" not in result["event_log"]:
        print()
        print(eventlog.table(result["event_log"]))
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.png'}")


if __name__ == "__main__":
    main()
