"""`make bench`: Hookbus's speed, each figure beside a baseline from the same run.

Starts a broker of its own and, per scenario, fresh topics and services on
loopback; bounded counts; writes bench/results/latest.json, a dated copy and
latest.png.

- throughput: events published to ingest (batches of 500) and delivered, signed,
  to a local receiver (`e2e_per_s`), against a plain aiohttp client posting the
  same bodies to the same receiver with the same concurrency (`raw_http_per_s`);
- latency: single publishes at half the measured e2e rate, publish to receipt;
- isolation: ten endpoints, one of which hangs until the attempt timeout; the
  healthy ones' throughput with it, over the same without it;
- noisy neighbour: one app's p99 publish-to-receipt at 20 events/s while another
  app floods eight slow endpoints (answering after 5 s) with 8,000 tasks, over
  the same p99 without the flood (`neighbour_p99_ratio`); and beside the same
  flood to eight fast endpoints, which tells the cost of the flood's volume (the
  pipeline's CPU on a shared machine) from that of its endpoints' slowness;
- subscriptions: router throughput with 10 and 100,000 subscriptions loaded, and
  the router's resident memory at 100,000 (see bench/routing.py);
- the event log (issue 11): filing rate, queries through ingest, ingest at rest
  and under flow, restore times, on a broker of its own (see bench/eventlog.py),
  under "event_log"."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench import eventlog, routing
from devtools.broker import ROOT, Broker, free_port
from devtools.processes import Stack
from devtools.receivers import Receivers
from services.common.topics import Topics, ensure_topics
from services.ingest.auth import issue_token

SECRET = "bench-secret-of-at-least-32-bytes!!"
APP = "app_bench"
QUIET_APP, NOISY_APP = "app_quiet", "app_noisy"
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 200  # the deliverer's HOOKBUS_MAX_IN_FLIGHT default
TARGETS = {"e2e_ratio": 0.5, "p99_ms": 100, "isolation_ratio": 0.9, "subs_ratio": 0.9,
           "router_rss_mb_100k": 150}


class Bench:
    def __init__(self, broker: Broker, workdir: Path, profile_to: Path | None = None) -> None:
        """`profile_to`: run router and deliverer under pyinstrument, reports there."""
        self.broker = broker
        self.workdir = workdir
        self.profile_to = profile_to
        self.runs = 0
        self.headers = self.headers_for(APP)

    @staticmethod
    def headers_for(app: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(SECRET, scope='app', app_id=app)}"}

    async def stack(self, **env: str) -> Stack:
        self.runs += 1
        topics = Topics(f"bench{self.runs}.", (1, 2))
        await ensure_topics(self.broker.bootstrap, topics.specs(), partitions=6)
        stack = Stack(self.broker.bootstrap, topics.prefix, self.workdir / f"run{self.runs}",
                      HOOKBUS_JWT_SECRET=SECRET, HOOKBUS_ALLOW_HTTP="true",
                      HOOKBUS_ALLOWED_PRIVATE_CIDRS="127.0.0.0/8", HOOKBUS_RETRY_SCHEDULE="1s,2s",
                      HOOKBUS_LOG_LEVEL="WARNING", **env)
        (self.workdir / f"run{self.runs}").mkdir(parents=True, exist_ok=True)
        for service in ("ingest", "router", "deliverer"):
            wrap: tuple[str, ...] = ()
            if self.profile_to is not None and service != "ingest":
                report = self.profile_to / f"{service}.txt"
                wrap = ("-m", "pyinstrument", "-r", "text", "-o", str(report))
            stack.start(service, wrap=wrap)
        await stack.wait_ready(120)
        return stack

    async def subscribe(self, http: aiohttp.ClientSession, stack: Stack, url: str,
                        app: str = APP) -> None:
        async with http.post(f"{stack.ingest_url}/v1/apps/{app}/webhooks",
                             headers=self.headers_for(app),
                             json={"target": url, "triggers": ["*"]}) as response:
            assert response.status == 201, await response.text()

    async def publish_batches(self, http: aiohttp.ClientSession, stack: Stack, count: int,
                              app: str = APP) -> None:
        for start in range(0, count, 500):
            events = [{"type": "message.received", "data": {"n": n, "text": "x" * 200}}
                      for n in range(start, min(count, start + 500))]
            async with http.post(f"{stack.ingest_url}/v1/apps/{app}/events/batch",
                                 headers=self.headers_for(app),
                                 json={"events": events}) as response:
                assert response.status == 202, await response.text()

    async def paced(self, http: aiohttp.ClientSession, stack: Stack, receiver: Receivers,
                    path: str, rate: float, seconds: float, app: str = APP) -> list[float]:
        """Single publishes at `rate` for `seconds` (open loop); the milliseconds
        from each publish to its first arrival at `path`."""
        sent: dict[str, float] = {}
        headers = self.headers_for(app)

        async def one(n: int) -> None:
            at = time.monotonic()
            async with http.post(f"{stack.ingest_url}/v1/apps/{app}/events", headers=headers,
                                 json={"type": "message.received", "data": {"n": n}}) as r:
                sent[(await r.json())["id"]] = at

        begin, n, tasks = time.monotonic(), 0, []
        while time.monotonic() - begin < seconds:
            tasks.append(asyncio.create_task(one(n)))
            n += 1
            await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)
        await wait_for(lambda: receiver.distinct(path) >= len(sent), 120)
        return [(receiver.first(path, i) - at) * 1000 for i, at in sent.items()]


async def wait_for(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the scenario did not finish in time")
        await asyncio.sleep(0.02)


async def raw_http(receiver: Receivers, count: int) -> float:
    body = json.dumps({"id": "evt_x", "type": "message.received", "app_id": APP,
                       "created_at": datetime.now(UTC).isoformat(),
                       "data": {"text": "x" * 200}}).encode()
    queue = iter(range(count))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            for n in queue:
                async with http.post(receiver.url("/raw"), data=body,
                                     headers={"webhook-id": f"raw_{n}",
                                              "Content-Type": "application/json"}) as response:
                    await response.read()
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.monotonic() - started)


async def throughput(bench: Bench, receiver: Receivers, count: int) -> float:
    stack = await bench.stack()
    try:
        async with aiohttp.ClientSession() as http:
            await bench.subscribe(http, stack, receiver.url("/e2e"))
            await asyncio.sleep(1.5)
            started = time.monotonic()
            await bench.publish_batches(http, stack, count)
            await wait_for(lambda: receiver.distinct("/e2e") >= count, 300)
            return count / (max(t[0] for (p, _), t in receiver.arrivals.items() if p == "/e2e")
                            - started)
    finally:
        stack.stop()


async def latency(bench: Bench, receiver: Receivers, rate: float, seconds: float) -> list[float]:
    stack = await bench.stack()
    try:
        async with aiohttp.ClientSession() as http:
            await bench.subscribe(http, stack, receiver.url("/latency"))
            await asyncio.sleep(1.5)
            return await bench.paced(http, stack, receiver, "/latency", rate, seconds)
    finally:
        stack.stop()


async def neighbour(bench: Bench, receiver: Receivers, flood: int, seconds: float,
                    slow: bool = True) -> float:
    """The quiet app's p99 publish-to-receipt (ms) at 20/s, while the noisy app's
    `flood` events fan out to eight slow (or quick) endpoints (none when 0)."""
    stack = await bench.stack()
    tag = ("s" if slow else "q") if flood else "n"
    quiet = f"/quiet{tag}"
    try:
        async with aiohttp.ClientSession() as http:
            await bench.subscribe(http, stack, receiver.url(quiet), QUIET_APP)
            for n in range(8):
                path = f"/slow{tag}{n}" if slow else f"/quick{tag}{n}"
                await bench.subscribe(http, stack, receiver.url(path), NOISY_APP)
            await asyncio.sleep(1.5)
            if flood:
                await bench.publish_batches(http, stack, flood, NOISY_APP)
            latencies = sorted(await bench.paced(http, stack, receiver, quiet, 20, seconds,
                                                 QUIET_APP))
        return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    finally:
        stack.stop()


async def isolation(bench: Bench, receiver: Receivers, count: int, hanging: bool) -> float:
    """Healthy endpoints' deliveries per second, beside a hanging one or not."""
    stack = await bench.stack(HOOKBUS_DELIVERY_TIMEOUT="5s")
    tag = "h" if hanging else "n"
    healthy = [f"/iso{tag}{n}" for n in range(9)]
    try:
        async with aiohttp.ClientSession() as http:
            for path in healthy:
                await bench.subscribe(http, stack, receiver.url(path))
            tenth = "/hang" if hanging else f"/iso{tag}9"
            await bench.subscribe(http, stack, receiver.url(tenth))
            await asyncio.sleep(1.5)
            started = time.monotonic()
            await bench.publish_batches(http, stack, count)
            await wait_for(lambda: all(receiver.distinct(p) >= count for p in healthy), 300)
            last = max(t[0] for (p, _), t in receiver.arrivals.items() if p in healthy)
            return len(healthy) * count / (last - started)
    finally:
        stack.stop()


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version()}


async def run(quick: bool) -> dict:
    scale = 0.2 if quick else 1.0
    with tempfile.TemporaryDirectory(prefix="hookbus-bench-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        receiver = Receivers(slow_seconds=5.0)
        await receiver.start()
        bench = Bench(broker, workdir)
        try:
            n = int(5000 * scale)
            print(f"throughput: {n} events end to end, and the raw HTTP ceiling", flush=True)
            raw = await raw_http(receiver, n)
            e2e = await throughput(bench, receiver, n)
            print(f"  raw {raw:.0f}/s, e2e {e2e:.0f}/s", flush=True)
            print(f"latency: single publishes at {e2e / 2:.0f}/s for {20 * scale:.0f}s", flush=True)
            latencies = sorted(await latency(bench, receiver, e2e / 2, 20 * scale))
            print("isolation: ten endpoints, with and without one hanging", flush=True)
            m = int(1000 * scale)
            without = await isolation(bench, receiver, m, hanging=False)
            beside = await isolation(bench, receiver, m, hanging=True)
            print(f"  healthy {without:.0f}/s alone, {beside:.0f}/s beside a hanging one", flush=True)
            print("noisy neighbour: one app's p99 at 20/s, alone and beside a flood", flush=True)
            quiet_alone = await neighbour(bench, receiver, 0, 10 * scale)
            quiet_flooded = await neighbour(bench, receiver, int(1000 * scale), 10 * scale)
            quiet_quick = await neighbour(bench, receiver, int(1000 * scale), 10 * scale,
                                          slow=False)
            print(f"  p99 {quiet_alone:.0f} ms alone, {quiet_flooded:.0f} ms beside a flood of "
                  f"slow endpoints, {quiet_quick:.0f} ms beside the same flood to quick ones",
                  flush=True)
            print("subscriptions: the router with 10 and 100,000 loaded", flush=True)
            subs = {}
            for count in (10, 100_000):
                subs[count] = await routing.run_once(broker, count, int(10_000 * scale), workdir)
                print(f"  {json.dumps(subs[count])}", flush=True)
        finally:
            await receiver.stop()
            broker.stop()
    event_log = await eventlog.run(quick)
    return {
        "e2e_per_s": round(e2e, 1), "raw_http_per_s": round(raw, 1),
        "e2e_ratio": round(e2e / raw, 3),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "latency_rate_per_s": round(e2e / 2, 1), "latency_samples": len(latencies),
        "isolation_healthy_per_s": round(beside, 1), "isolation_baseline_per_s": round(without, 1),
        "isolation_ratio": round(beside / without, 3),
        "neighbour_p99_ms": round(quiet_flooded, 1), "neighbour_alone_p99_ms": round(quiet_alone, 1),
        "neighbour_p99_ratio": round(quiet_flooded / quiet_alone, 3),
        "neighbour_quick_flood_p99_ms": round(quiet_quick, 1),
        "subs_10_per_s": subs[10]["events_per_s"], "subs_100k_per_s": subs[100_000]["events_per_s"],
        "subs_ratio": round(subs[100_000]["events_per_s"] / subs[10]["events_per_s"], 3),
        "router_rss_mb_10": subs[10]["router_rss_mb"],
        "router_rss_mb_100k": subs[100_000]["router_rss_mb"],
        "machine": machine(), "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick, "event_log": event_log,
    }


def table(result: dict) -> str:
    rows = [("end to end, events/s", result["e2e_per_s"], f"raw HTTP {result['raw_http_per_s']}/s",
             f"ratio {result['e2e_ratio']} (target ≥ {TARGETS['e2e_ratio']})"),
            ("latency p50 / p99, ms", f"{result['p50_ms']} / {result['p99_ms']}",
             f"at {result['latency_rate_per_s']}/s", f"p99 target ≤ {TARGETS['p99_ms']}"),
            ("isolation, healthy/s", result["isolation_healthy_per_s"],
             f"alone {result['isolation_baseline_per_s']}/s",
             f"ratio {result['isolation_ratio']} (target ≥ {TARGETS['isolation_ratio']})"),
            ("noisy neighbour, p99 ms", result["neighbour_p99_ms"],
             f"alone {result['neighbour_alone_p99_ms']} ms",
             f"ratio {result['neighbour_p99_ratio']}; quick flood "
             f"{result['neighbour_quick_flood_p99_ms']} ms"),
            ("router, events/s at 100k subs", result["subs_100k_per_s"],
             f"at 10 subs {result['subs_10_per_s']}/s",
             f"ratio {result['subs_ratio']} (target ≥ {TARGETS['subs_ratio']})"),
            ("router RSS at 100k subs, MB", result["router_rss_mb_100k"],
             f"at 10 subs {result['router_rss_mb_10']}",
             f"target ≤ {TARGETS['router_rss_mb_100k']}")]
    lines = [f"| {'figure':<30} | {'value':>12} | {'baseline (same run)':<24} | {'against the goal':<34} |",
             f"|{'-' * 32}|{'-' * 14}|{'-' * 26}|{'-' * 36}|"]
    lines += [f"| {a:<30} | {str(b):>12} | {c:<24} | {d:<34} |" for a, b, c, d in rows]
    m = result["machine"]
    lines.append(f"\n{m['cores']} cores, {m['cpu']}, Python {m['python']}, {result['at']}")
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    pairs = [
        ("Throughput (events/s)", ["raw HTTP", "end to end"],
         [result["raw_http_per_s"], result["e2e_per_s"]]),
        ("Latency at half rate (ms)", ["p50", "p99"], [result["p50_ms"], result["p99_ms"]]),
        ("Healthy endpoints (deliveries/s)", ["alone", "beside a hang"],
         [result["isolation_baseline_per_s"], result["isolation_healthy_per_s"]]),
        ("Another app's p99 (ms)", ["alone", "flood, slow", "flood, quick"],
         [result["neighbour_alone_p99_ms"], result["neighbour_p99_ms"],
          result["neighbour_quick_flood_p99_ms"]]),
        ("Router (events/s)", ["10 subs", "100k subs"],
         [result["subs_10_per_s"], result["subs_100k_per_s"]]),
    ]
    for axis, (title, labels, values) in zip(axes, pairs, strict=True):
        axis.bar(labels, values, color=["#8da0cb", "#fc8d62", "#66c2a5"][:len(values)])
        axis.set_title(title, fontsize=10)
        for x, value in enumerate(values):
            axis.annotate(f"{value:g}", (x, value), ha="center", va="bottom", fontsize=9)
    m = result["machine"]
    figure.suptitle(f"Hookbus make bench — {m['cores']} cores, {m['cpu']} — {result['at']}",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fifth of the counts")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick))
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"{result['at'][:19].replace(':', '')}.json").write_text(text)
    chart(result, RESULTS / "latest.png")
    print()
    print(table(result))
    print()
    print(eventlog.table(result["event_log"]))
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.png'}")


if __name__ == "__main__":
    main()
