"""The event log's figures (issue 11, item 4), on a broker of its own (loopback,
free ports, 6 partitions), each measured, none estimated:

1. **load**: N events (full 200,000, quick 50,000; FULL_EVENTS) of 1,000 apps with W
   webhooks (100,000, quick 5,000) are written straight to Kafka before the
   event log starts: each event's envelope to `events`, then its `Routed` (1 to
   3 webhooks of its app, where `events` took the envelope) and one `Filed`
   attempt per delivery to `eventlog.updates`, keyed by app id. 95% of the
   attempts are successes (200), 5% failures (500), so that `status=failed`
   lists something. Then the event log starts on that backlog: its filing rate
   (updates from the first filed to the last, read from its /metrics), its CPU
   seconds and RSS (/proc) once everything is filed.
2. **queries through ingest** (the real path: ingest looks the owner up and
   relays): a list (`?limit=50`), a list with `status=failed`, an event's detail
   (its envelope read back from `events`); random apps and events, a few
   concurrent clients (details also with one client); p50/p99 of each.
3. **ingest at rest and while deliveries flow**: CPU ms/s and RSS of ingest (and
   of the event log) for 10 s at rest, while events published through ingest's
   API are delivered to a local receiver as fast as the machine sustains (the
   publishers keep a bounded number outstanding) for 20 s, and 10 s after
   (quick: 5, 10 and 5 s); how far the event log fell behind, and when it
   caught up.
4. **restore**: the event log stopped (SIGTERM, then SIGKILL) and restarted on
   its data dir (warm), then stopped and restarted with its data dir deleted
   (cold: restored from the changelog): seconds until /readyz is 200 and until
   a list through ingest answers 200, and its RSS then.

    python -m bench.eventlog [--quick]   # alone; merges "event_log" into latest.json

`make bench` runs it last (bench/run.py) and writes its figures under "event_log"."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import shutil
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devtools.broker import ROOT, Broker, free_port
from devtools.processes import Stack
from devtools.receivers import Receivers
from schemas.attempts import Attempt
from schemas.eventlog import Filed, Routed, update_encoder
from schemas.events import Event
from services.common.topics import Topics, ensure_topics, eventlog_app_id
from services.eventlog.keys import partition_of
from services.ingest.auth import issue_token

SECRET = "bench-eventlog-secret-of-at-least-32-bytes!!"
PARTITIONS = 6
APPS = 1000
FAILED_SHARE = 0.05
# The full run's events. A million (issue 11's figure) do not fit the full run's
# quarter of an hour: measured on two cores, their 3 million updates took 16
# minutes to file (~3,200/s) and their 16 million changelog records 18 more to
# restore cold (~15,000/s), 37 minutes in all. `--events 1000000` runs them.
FULL_EVENTS = 200_000
CLIENTS = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RESULTS = ROOT / "bench" / "results"
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Size:
    events: int
    webhooks: int
    queries: int
    rest_s: float
    flow_s: float

    @classmethod
    def of(cls, quick: bool, events: int | None = None, webhooks: int | None = None) -> Size:
        if quick:
            size = cls(events=50_000, webhooks=5_000, queries=300, rest_s=5, flow_s=10)
        else:
            size = cls(events=FULL_EVENTS, webhooks=100_000, queries=2_000, rest_s=10,
                       flow_s=20)
        return replace(size, events=events or size.events, webhooks=webhooks or size.webhooks)

    @property
    def timeout_s(self) -> float:
        """For the filing of the backlog and for one restore: far above what
        two cores take (~0.3 ms per update filed, ~1.1 ms of restore per
        event), so that only a stuck run times out."""
        return 300 + self.events * 0.006


# -- /proc ---------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS), MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


def rss_mb(pid: int) -> float:
    return round(memory_mb(pid)["VmRSS"], 1)


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children that ended (the broker
    and every service instance are waited for when they stop)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- the load ----------------------------------------------------------------------
@dataclass
class Loaded:
    events: int = 0
    updates: int = 0
    failed_deliveries: int = 0
    seconds: float = 0.0
    sample: list[tuple[str, str]] = field(default_factory=list)  # (app, event id) for details


def app_name(n: int) -> str:
    return f"app_{n:04d}"


async def load(bootstrap: str, topics: Topics, size: Size) -> Loaded:
    """Every record of the load, written with a batching producer (sends are
    awaited a chunk at a time, not one by one)."""
    rng = random.Random(11)
    per_app = max(1, size.webhooks // APPS)
    # Partitions just created answer NOT_LEADER for a moment after their leader is
    # elected; the producer retries them (a failure that stays raises from gather).
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=50,
                                max_batch_size=512 * 1024, max_request_size=1 << 20)
    await producer.start()
    loaded = Loaded()
    begin = time.monotonic()
    # The events span the ten minutes before now, oldest first: the event log's
    # minute counters expire an hour after their minute, so the retention sweep
    # deletes nothing for the first 50 minutes after the load.
    span_ms = 10 * 60 * 1000
    t0 = datetime.now(UTC) - timedelta(milliseconds=span_ms)
    attempt_offsets = [0] * PARTITIONS
    sample_every = max(1, size.events // 20_000)
    chunk = 10_000
    pending: list[asyncio.Future] = []
    try:
        for start in range(0, size.events, chunk):
            batch = []
            for n in range(start, min(size.events, start + chunk)):
                app = app_name(n % APPS)
                created = t0 + timedelta(milliseconds=n * span_ms // size.events)
                created = created.replace(microsecond=created.microsecond // 1000 * 1000)
                event = Event(id=f"evt_{rng.getrandbits(128):032x}", type="message.received",
                              app_id=app, created_at=created,
                              data={"text": "hello " + "x" * 150, "n": n})
                batch.append(event)
            sent = [await producer.send(topics.events, _encode(e), key=e.app_id.encode())
                    for e in batch]
            where = await asyncio.gather(*sent)
            await asyncio.gather(*pending)
            pending = []
            for event, meta in zip(batch, where, strict=True):
                app_n = int(event.app_id[4:])
                hooks = sorted({f"wh_{app_n:04d}_{rng.randrange(per_app):04d}"
                                for _ in range(rng.randint(1, 3))})
                key = event.app_id.encode()
                routed = Routed(app_id=event.app_id, event_id=event.id, event_type=event.type,
                                created_at=event.created_at, source="events",
                                partition=meta.partition, offset=meta.offset, webhook_ids=hooks)
                pending.append(await producer.send(topics.eventlog_updates,
                                                   update_encoder.encode(routed), key=key))
                for hook in hooks:
                    ok = rng.random() >= FAILED_SHARE
                    latency = rng.uniform(20, 400) if ok else rng.uniform(100, 2000)
                    p = partition_of(hook, PARTITIONS)
                    attempt = Attempt(
                        webhook_id=hook, event_id=event.id, event_type=event.type, attempt=1,
                        at=event.created_at + timedelta(milliseconds=latency),
                        result="success" if ok else "failure", latency_ms=round(latency, 1),
                        status_code=200 if ok else 500,
                        error=None if ok else "HTTP 500", response=None if ok else "oops",
                        app_id=event.app_id, event_created_at=event.created_at)
                    filed = Filed(attempt=attempt, partition=p, offset=attempt_offsets[p])
                    attempt_offsets[p] += 1
                    loaded.failed_deliveries += not ok
                    pending.append(await producer.send(topics.eventlog_updates,
                                                       update_encoder.encode(filed), key=key))
                loaded.updates += 1 + len(hooks)
                if loaded.events % sample_every == 0:
                    loaded.sample.append((event.app_id, event.id))
                loaded.events += 1
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    loaded.seconds = time.monotonic() - begin
    return loaded


# -- the event log's own figures ---------------------------------------------------
async def filed_counts(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    """hookbus_eventlog_updates_total by outcome, from the instance's /metrics."""
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("hookbus_eventlog_updates_total{"):
            labels, value = line.rsplit(" ", 1)
            outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = int(float(value))
    return counts


async def lag(bootstrap: str, group: str, topic: str) -> int:
    """How many records of `topic` the group has not committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        return sum(ends[tp] - (committed[tp].offset if tp in committed and
                               committed[tp].offset >= 0 else 0) for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def file_backlog(stack: Stack, http: aiohttp.ClientSession, bootstrap: str,
                       topics: Topics, expected: int, timeout: float) -> dict:
    """Start the event log on the backlog; until it has filed `expected` updates."""
    spawned = time.monotonic()
    service = stack.start("eventlog")
    url = stack.eventlog_urls[0]
    samples: list[tuple[float, int, float]] = []  # (t, filed, cpu s)
    deadline = spawned + timeout
    total = 0
    slowest_metrics_s = 0.0  # the longest /metrics answer while filing: a stalled loop shows
    unanswered = 0
    while True:
        if not service.alive:
            raise RuntimeError(f"the event log exited:\n{service.log()[-3000:]}")
        asked = time.monotonic()
        try:
            total = sum((await filed_counts(http, url)).values())
            slowest_metrics_s = max(slowest_metrics_s, time.monotonic() - asked)
        except aiohttp.ClientConnectionError:
            pass  # not listening yet
        except (aiohttp.ClientError, TimeoutError):
            unanswered += 1  # no answer within the session's timeout: counted, asked again
            slowest_metrics_s = max(slowest_metrics_s, time.monotonic() - asked)
        samples.append((time.monotonic(), total, cpu_s(service.process.pid)))
        if total >= expected:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the event log filed {total} of {expected} updates in "
                               f"{timeout:.0f}s")
        await asyncio.sleep(0.25)
    counts = await filed_counts(http, url)
    first = next(s for s in samples if s[1] > 0)
    last = samples[-1]
    # The second half of the updates alone: does filing slow as the table grows?
    half = next(s for s in samples if s[1] >= expected / 2)
    pid = service.process.pid
    memory = memory_mb(pid)
    data_dir = Path(service.env["HOOKBUS_EVENTLOG_DATA_DIR"])
    data_mb = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file()) / 2**20
    # Until its offsets are committed (the restarts below start from there).
    lag_deadline = time.monotonic() + 60
    while (left := await lag(bootstrap, eventlog_app_id(topics.prefix),
                             topics.eventlog_updates)) > 0 and time.monotonic() < lag_deadline:
        await asyncio.sleep(0.5)
    return {
        "updates": last[1],
        "outcomes": counts,
        "slowest_metrics_answer_while_filing_s": round(slowest_metrics_s, 2),
        "metrics_unanswered_while_filing": unanswered,
        "first_filed_after_start_s": round(first[0] - spawned, 2),
        "filing_s": round(last[0] - first[0], 2),
        "filing_rate_updates_per_s": round((last[1] - first[1]) / (last[0] - first[0]), 1),
        "filing_rate_second_half_updates_per_s": round(
            (last[1] - half[1]) / max(1e-9, last[0] - half[0]), 1),
        "cpu_s": round(last[2], 1),
        "cpu_s_before_filing": round(first[2], 1),
        "cpu_ms_per_update": round((last[2] - first[2]) * 1000 / max(1, last[1] - first[1]), 3),
        "rss_mb": round(memory["VmRSS"], 1),
        "peak_rss_mb": round(memory["VmHWM"], 1),
        "data_dir_mb": round(data_mb, 1),
        "uncommitted_records": left,
    }


# -- queries through ingest --------------------------------------------------------
class Tokens:
    def __init__(self) -> None:
        self._tokens: dict[str, dict[str, str]] = {}

    def __call__(self, app: str) -> dict[str, str]:
        if app not in self._tokens:
            token = issue_token(SECRET, scope="app", app_id=app, lifetime=6 * 3600)
            self._tokens[app] = {"Authorization": f"Bearer {token}"}
        return self._tokens[app]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def timed_requests(http: aiohttp.ClientSession, base: str, tokens: Tokens,
                         requests: list[tuple[str, str]], clients: int = CLIENTS) -> dict:
    """GET each (app, path) with `clients` concurrent clients; latencies of 200s.
    A detail (200) of another event than the one asked for counts as "wrong"."""
    queue = iter(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    items: list[int] = []
    wrong = 0

    async def client() -> None:
        nonlocal wrong
        for app, path in queue:
            started = time.perf_counter()
            async with http.get(base + path, headers=tokens(app)) as response:
                body = await response.read()
            elapsed = (time.perf_counter() - started) * 1000
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200:
                latencies.append(elapsed)
                page = json.loads(body)
                if "events" in page:
                    items.append(len(page["events"]))
                else:
                    items.append(len(page["deliveries"]))
                    event = page["event"]
                    wrong += (event["app_id"], event["id"]) != (
                        app, path.rsplit("/", 1)[1])

    begin = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.monotonic() - begin
    if not latencies:
        raise RuntimeError(f"no query answered 200: {statuses}")
    return {"p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "per_s": round(len(requests) / seconds, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "wrong": wrong, "mean_items": round(statistics.mean(items), 1)}


async def queries(http: aiohttp.ClientSession, stack: Stack, tokens: Tokens, loaded: Loaded,
                  count: int) -> dict:
    rng = random.Random(4)
    apps = [app_name(rng.randrange(APPS)) for _ in range(count)]
    # Distinct events, none read before (the event log caches 512 envelopes).
    alone = max(100, count // 4)
    picked = rng.sample(loaded.sample, min(len(loaded.sample), count + alone))
    details, details_alone = picked[:count], picked[count:]
    base = stack.ingest_url
    # A few of each first (connections, the owner map, code paths).
    await timed_requests(http, base, tokens, [(a, f"/v1/apps/{a}/events?limit=50")
                                              for a in apps[:20]])
    out = {}
    out["list"] = await timed_requests(http, base, tokens, [
        (a, f"/v1/apps/{a}/events?limit=50") for a in apps])
    rng.shuffle(apps)
    out["list_failed"] = await timed_requests(http, base, tokens, [
        (a, f"/v1/apps/{a}/events?limit=50&status=failed") for a in apps])
    out["detail"] = await timed_requests(http, base, tokens, [
        (a, f"/v1/apps/{a}/events/{e}") for a, e in details])
    # The same with one client: the event log reads envelopes with one consumer,
    # one at a time (services/eventlog/envelopes.py), so clients queue there.
    out["detail_1_client"] = await timed_requests(http, base, tokens, [
        (a, f"/v1/apps/{a}/events/{e}") for a, e in details_alone], clients=1)
    return out


# -- ingest at rest and under flow ---------------------------------------------------
class Sampler:
    """CPU ms/s and RSS of some processes, once a second."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    async def window(self, seconds: float, during=None) -> dict[str, dict]:  # type: ignore[no-untyped-def]
        begin = time.monotonic()
        cpu0 = {name: cpu_s(pid) for name, pid in self.pids.items()}
        rss: dict[str, list[float]] = {name: [] for name in self.pids}
        while time.monotonic() - begin < seconds:
            await asyncio.sleep(min(1.0, max(0.0, begin + seconds - time.monotonic())))
            for name, pid in self.pids.items():
                rss[name].append(rss_mb(pid))
        elapsed = time.monotonic() - begin
        return {name: {"cpu_ms_per_s": round((cpu_s(pid) - cpu0[name]) * 1000 / elapsed, 1),
                       "rss_mb": rss[name][-1], "rss_max_mb": max(rss[name])}
                for name, pid in self.pids.items()}


async def set_group_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the end of `topic` for `group`: the router must not route the
    loaded events (they are the event log's, written straight to Kafka)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: ends[tp] for tp in tps})
    finally:
        await consumer.stop()


async def flow(http: aiohttp.ClientSession, stack: Stack, tokens: Tokens, size: Size,
               bootstrap: str, topics: Topics) -> dict:
    receiver = Receivers()
    await receiver.start()
    try:
        await set_group_to_end(bootstrap, f"{topics.prefix}router", topics.events)
        stack.start("router")
        stack.start("deliverer")
        await stack.wait_ready(120)
        flow_apps = [f"app_flow{n}" for n in range(10)]
        for app in flow_apps:
            async with http.post(f"{stack.ingest_url}/v1/apps/{app}/webhooks",
                                 headers=tokens(app),
                                 json={"target": receiver.url(f"/{app}"),
                                       "triggers": ["*"]}) as response:
                assert response.status == 201, await response.text()
        await asyncio.sleep(2)
        eventlog_url = stack.eventlog_urls[0]
        filed_before = sum((await filed_counts(http, eventlog_url)).values())
        sampler = Sampler({"ingest": stack.services["ingest"].process.pid,
                           "eventlog": stack.services["eventlog"].process.pid})
        rest = await sampler.window(size.rest_s)

        published = 0
        stop = asyncio.Event()
        window = 3000  # published but not yet received, at most

        async def publisher(k: int) -> None:
            nonlocal published
            n = 0
            while not stop.is_set():
                if published - len(receiver.arrivals) > window:
                    await asyncio.sleep(0.005)
                    continue
                app = flow_apps[(k + n) % len(flow_apps)]
                n += 1
                events = [{"type": "message.received", "data": {"text": "x" * 200, "i": i}}
                          for i in range(50)]
                async with http.post(f"{stack.ingest_url}/v1/apps/{app}/events/batch",
                                     headers=tokens(app), json={"events": events}) as response:
                    assert response.status == 202, await response.text()
                published += len(events)

        publishers = [asyncio.create_task(publisher(k)) for k in range(4)]
        await asyncio.sleep(size.flow_s / 5)  # the pipeline fills
        received0, published0 = len(receiver.arrivals), published
        during = await sampler.window(size.flow_s)
        delivered_in_window = len(receiver.arrivals) - received0
        published_in_window = published - published0
        group = eventlog_app_id(topics.prefix)
        # What the event log had not filed yet (committed offsets: ±1 s of work).
        backlog = (await lag(bootstrap, group, topics.attempts)
                   + await lag(bootstrap, group, topics.eventlog_updates))
        stop.set()
        await asyncio.gather(*publishers)
        drain_begin = time.monotonic()
        while len(receiver.arrivals) < published:
            if time.monotonic() - drain_begin > 120:
                raise TimeoutError(f"{len(receiver.arrivals)} of {published} delivered")
            await asyncio.sleep(0.1)
        drained_s = time.monotonic() - drain_begin
        # Ingest at rest again while the event log files what is left: one Routed
        # and one (successful) attempt per event.
        after = asyncio.create_task(Sampler({"ingest": sampler.pids["ingest"]}).window(
            size.rest_s))
        expected = filed_before + 2 * published
        caught_up_s = None
        while time.monotonic() - drain_begin < size.timeout_s:
            if sum((await filed_counts(http, eventlog_url)).values()) >= expected:
                caught_up_s = round(time.monotonic() - drain_begin, 1)
                break
            await asyncio.sleep(0.25)
        return {"rest": rest, "during": during, "after": await after,
                "eventlog_rss_mb_after": rss_mb(sampler.pids["eventlog"]),
                "published": published, "delivered": len(receiver.arrivals),
                "published_per_s": round(published_in_window / size.flow_s, 1),
                "delivered_per_s": round(delivered_in_window / size.flow_s, 1),
                "drained_after_s": round(drained_s, 1),
                "eventlog_backlog_at_flow_end": backlog,
                "eventlog_caught_up_after_drain_s": caught_up_s}
    finally:
        await receiver.stop()


# -- restore -----------------------------------------------------------------------
async def restore(http: aiohttp.ClientSession, stack: Stack, tokens: Tokens, how: str,
                  timeout: float) -> dict:
    """Stop the event log (`how`: term, kill, cold = term and delete its data
    dir), start it again; seconds until /readyz 200 and a list through ingest 200."""
    name = "eventlog"
    service = stack.services[name]
    if how == "kill":
        stack.kill(name)
    else:
        await asyncio.to_thread(stack.terminate, name)
    if how == "cold":
        shutil.rmtree(service.env["HOOKBUS_EVENTLOG_DATA_DIR"])
    began = time.monotonic()
    service = stack.restart(name)
    url = f"http://127.0.0.1:{service.port}"
    ready_s = None
    while ready_s is None:
        if not service.alive:
            raise RuntimeError(f"the event log exited:\n{service.log()[-3000:]}")
        if time.monotonic() - began > timeout:
            return {"ready_s": None, "list_s": None, "timed_out_s": timeout,
                    "rss_mb": rss_mb(service.process.pid)}
        try:
            async with http.get(url + "/readyz") as response:
                if response.status == 200:
                    ready_s = time.monotonic() - began
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    app = app_name(7)
    statuses: dict[int, int] = {}
    while True:
        async with http.get(f"{stack.ingest_url}/v1/apps/{app}/events?limit=50",
                            headers=tokens(app)) as response:
            body = await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200 and json.loads(body)["events"]:
                break
        if time.monotonic() - began > timeout:
            return {"ready_s": round(ready_s, 2), "list_s": None, "timed_out_s": timeout,
                    "rss_mb": rss_mb(service.process.pid)}
        await asyncio.sleep(0.1)
    list_s = time.monotonic() - began
    return {"ready_s": round(ready_s, 2), "list_s": round(list_s, 2),
            "list_statuses": {str(k): v for k, v in sorted(statuses.items())},
            "rss_mb": rss_mb(service.process.pid),
            "cpu_s_to_ready": round(cpu_s(service.process.pid), 1)}


async def leaders_elected(bootstrap: str, names: list[str], timeout: float = 30) -> None:
    """Until every partition of `names` has a leader (just created topics have
    none for a moment: the first writes would be retried, with warnings)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = await admin.describe_topics(names)
            if all(t.get("partitions") and all(p["leader"] >= 0 for p in t["partitions"])
                   for t in described):
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


# -- the whole -----------------------------------------------------------------------
async def run(quick: bool, events: int | None = None, webhooks: int | None = None,
              restarts: tuple[str, ...] = ("term", "kill", "cold")) -> dict:
    """Every figure (a dict for latest.json's "event_log")."""
    size = Size.of(quick, events, webhooks)
    began, busy0, own0 = time.monotonic(), machine_busy_s(), own_cpu_s()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hookbus-bench-eventlog-") as tmp:
        tmpdir = Path(tmp)
        broker = Broker(tmpdir / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        stack: Stack | None = None
        try:
            topics = Topics("benchlog.", (1.0, 2.0))
            await ensure_topics(broker.bootstrap, topics.specs(), partitions=PARTITIONS)
            await leaders_elected(broker.bootstrap, [topics.events, topics.eventlog_updates])
            print(f"event log: writing {size.events:,} events of {APPS:,} apps "
                  f"({size.webhooks:,} webhooks) and their updates to Kafka", flush=True)
            loaded = await load(broker.bootstrap, topics, size)
            print(f"  {loaded.events:,} events and {loaded.updates:,} updates written in "
                  f"{loaded.seconds:.1f}s", flush=True)
            stack = Stack(broker.bootstrap, topics.prefix, tmpdir / "stack",
                          HOOKBUS_JWT_SECRET=SECRET, HOOKBUS_ALLOW_HTTP="true",
                          HOOKBUS_ALLOWED_PRIVATE_CIDRS="127.0.0.0/8",
                          HOOKBUS_RETRY_SCHEDULE="1s,2s", HOOKBUS_LOG_LEVEL="WARNING")
            (tmpdir / "stack").mkdir()
            tokens = Tokens()
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                print("event log: filing the backlog", flush=True)
                filing = await file_backlog(stack, http, broker.bootstrap, topics,
                                            loaded.updates, timeout=size.timeout_s)
                print(f"  {json.dumps(filing)}", flush=True)
                changelog_records = await end_offsets(broker.bootstrap,
                                                      topics.eventlog_changelog)
                stack.start("ingest")
                await stack.wait_ready(120)
                print(f"event log: {size.queries} queries of each kind through ingest, "
                      f"{CLIENTS} clients", flush=True)
                answered = await queries(http, stack, tokens, loaded, size.queries)
                print(f"  {json.dumps(answered)}", flush=True)
                print(f"event log: ingest at rest {size.rest_s:.0f}s, under flow "
                      f"{size.flow_s:.0f}s, after {size.rest_s:.0f}s", flush=True)
                flowed = await flow(http, stack, tokens, size, broker.bootstrap, topics)
                print(f"  {json.dumps(flowed)}", flush=True)
                print("event log: restarts (SIGTERM warm, SIGKILL warm, cold)", flush=True)
                restores = {}
                for how in restarts:
                    restores[how] = await restore(http, stack, tokens, how, size.timeout_s)
                    print(f"  {how}: {json.dumps(restores[how])}", flush=True)
        finally:
            if stack is not None:
                stack.stop()
            await asyncio.to_thread(broker.stop)
    result = figures(size, loaded, filing, changelog_records, answered, flowed, restores)
    # What else ran on the machine meanwhile (other sessions' tests, say): every
    # figure above shares the cores with it.
    result["run_s"] = round(time.monotonic() - began, 1)
    result["load_avg_1m_before"] = round(load_before, 2)
    result["cpu_s_this_run"] = round(own_cpu_s() - own0, 1)
    result["cpu_s_other_processes"] = round(max(0.0, machine_busy_s() - busy0
                                                - (own_cpu_s() - own0)), 1)
    return result


def figures(size: Size, loaded: Loaded, filing: dict, changelog_records: int, answered: dict,
            flowed: dict, restores: dict) -> dict:
    out: dict = {
        "events": loaded.events, "apps": APPS, "webhooks": size.webhooks,
        "updates": loaded.updates, "failed_deliveries": loaded.failed_deliveries,
        "partitions": PARTITIONS,
        "load_write_s": round(loaded.seconds, 1),
        "filing_rate_updates_per_s": filing["filing_rate_updates_per_s"],
        "filing_rate_second_half_updates_per_s": filing["filing_rate_second_half_updates_per_s"],
        "filing_s": filing["filing_s"],
        "filing_outcomes": filing["outcomes"],
        "eventlog_slowest_metrics_answer_while_filing_s":
            filing["slowest_metrics_answer_while_filing_s"],
        "eventlog_metrics_unanswered_while_filing": filing["metrics_unanswered_while_filing"],
        "eventlog_cpu_s_after_load": filing["cpu_s"],
        "eventlog_cpu_s_before_filing": filing["cpu_s_before_filing"],
        "eventlog_cpu_ms_per_update": filing["cpu_ms_per_update"],
        "eventlog_rss_mb_after_load": filing["rss_mb"],
        "eventlog_peak_rss_mb_load": filing["peak_rss_mb"],
        "eventlog_data_dir_mb_after_load": filing["data_dir_mb"],
        "changelog_records": changelog_records,
        "query_clients": CLIENTS, "query_samples": size.queries,
    }
    for kind in ("list", "list_failed", "detail", "detail_1_client"):
        out[f"{kind}_p50_ms"] = answered[kind]["p50_ms"]
        out[f"{kind}_p99_ms"] = answered[kind]["p99_ms"]
        out[f"{kind}_per_s"] = answered[kind]["per_s"]
        out[f"{kind}_statuses"] = answered[kind]["statuses"]
        out[f"{kind}_wrong"] = answered[kind]["wrong"]
        out[f"{kind}_mean_items"] = answered[kind]["mean_items"]
    for phase in ("rest", "during", "after"):
        out[f"ingest_cpu_ms_per_s_{phase}"] = flowed[phase]["ingest"]["cpu_ms_per_s"]
        out[f"ingest_rss_mb_{phase}"] = flowed[phase]["ingest"]["rss_mb"]
    out["ingest_rss_max_mb_during"] = flowed["during"]["ingest"]["rss_max_mb"]
    for phase in ("rest", "during"):
        out[f"eventlog_cpu_ms_per_s_{phase}"] = flowed[phase]["eventlog"]["cpu_ms_per_s"]
        out[f"eventlog_rss_mb_{phase}"] = flowed[phase]["eventlog"]["rss_mb"]
    out["eventlog_rss_mb_after_flow"] = flowed["eventlog_rss_mb_after"]
    out["flow_seconds"] = size.flow_s
    out["flow_published_per_s"] = flowed["published_per_s"]
    out["flow_delivered_per_s"] = flowed["delivered_per_s"]
    out["flow_published"] = flowed["published"]
    out["flow_drained_after_s"] = flowed["drained_after_s"]
    out["flow_eventlog_backlog_at_end_records"] = flowed["eventlog_backlog_at_flow_end"]
    out["flow_eventlog_caught_up_after_drain_s"] = flowed["eventlog_caught_up_after_drain_s"]
    for how, label in (("term", "warm_sigterm"), ("kill", "warm_sigkill"), ("cold", "cold")):
        if how not in restores:
            continue  # not run (--restarts)
        r = restores[how]
        out[f"restore_{label}_ready_s"] = r["ready_s"]
        out[f"restore_{label}_list_s"] = r["list_s"]
        out[f"restore_{label}_rss_mb"] = r["rss_mb"]
        if "timed_out_s" in r:
            out[f"restore_{label}_timed_out_s"] = r["timed_out_s"]
    return out


def table(r: dict) -> str:
    def f(value: object, unit: str = "") -> str:
        return "not measured" if value is None else f"{value}{unit}"

    rows = [
        ("events loaded", f"{r['events']:,}",
         f"{r['apps']:,} apps, {r['webhooks']:,} webhooks; {r['updates']:,} updates "
         f"({r['failed_deliveries']:,} failed deliveries)"),
        ("filing rate, updates/s", f(r["filing_rate_updates_per_s"]),
         f"second half {r['filing_rate_second_half_updates_per_s']}/s; "
         f"{r['filing_s']} s in all"),
        ("event log CPU after load, s", f(r["eventlog_cpu_s_after_load"]),
         f"{r['eventlog_cpu_s_before_filing']} s before filing began; "
         f"{r['eventlog_cpu_ms_per_update']} ms/update"),
        ("event log RSS after load, MB", f(r["eventlog_rss_mb_after_load"]),
         f"peak {r['eventlog_peak_rss_mb_load']}; RocksDB "
         f"{r['eventlog_data_dir_mb_after_load']} MB; changelog {r['changelog_records']:,} records"),
        ("list p50 / p99, ms", f"{r['list_p50_ms']} / {r['list_p99_ms']}",
         f"{r['query_samples']} via ingest, {r['query_clients']} clients, "
         f"{r['list_per_s']}/s; {r['list_statuses']}"),
        ("list failed p50 / p99, ms", f"{r['list_failed_p50_ms']} / {r['list_failed_p99_ms']}",
         f"{r['list_failed_mean_items']} events/page; {r['list_failed_statuses']}"),
        ("detail p50 / p99, ms", f"{r['detail_p50_ms']} / {r['detail_p99_ms']}",
         f"{r['detail_per_s']}/s; {r['detail_statuses']}; wrong {r['detail_wrong']}"),
        ("detail, 1 client, p50 / p99, ms",
         f"{r['detail_1_client_p50_ms']} / {r['detail_1_client_p99_ms']}",
         f"{r['detail_1_client_per_s']}/s; {r['detail_1_client_statuses']}; "
         f"wrong {r['detail_1_client_wrong']}"),
        ("ingest CPU ms/s rest/flow/after",
         f"{r['ingest_cpu_ms_per_s_rest']} / {r['ingest_cpu_ms_per_s_during']} / "
         f"{r['ingest_cpu_ms_per_s_after']}",
         f"flow: {r['flow_published_per_s']} published, {r['flow_delivered_per_s']} "
         f"delivered /s for {r['flow_seconds']} s"),
        ("ingest RSS MB rest/flow/after",
         f"{r['ingest_rss_mb_rest']} / {r['ingest_rss_mb_during']} / "
         f"{r['ingest_rss_mb_after']}", f"max during flow {r['ingest_rss_max_mb_during']}"),
        ("event log CPU ms/s rest/flow",
         f"{r['eventlog_cpu_ms_per_s_rest']} / {r['eventlog_cpu_ms_per_s_during']}",
         f"{r['flow_eventlog_backlog_at_end_records']:,} records behind at the flow's end; "
         f"caught up {f(r['flow_eventlog_caught_up_after_drain_s'], ' s')} after the drain"),
        ("event log RSS MB rest/flow/after",
         f"{r['eventlog_rss_mb_rest']} / {r['eventlog_rss_mb_during']} / "
         f"{r['eventlog_rss_mb_after_flow']}", "after: once caught up"),
        ("warm restart (SIGTERM), s", f"{f(r.get('restore_warm_sigterm_ready_s'))} / "
         f"{f(r.get('restore_warm_sigterm_list_s'))}",
         f"ready / list 200; RSS {r.get('restore_warm_sigterm_rss_mb')} MB"),
        ("warm restart (SIGKILL), s", f"{f(r.get('restore_warm_sigkill_ready_s'))} / "
         f"{f(r.get('restore_warm_sigkill_list_s'))}",
         f"ready / list 200; RSS {r.get('restore_warm_sigkill_rss_mb')} MB"),
        ("cold restore, s", f"{f(r.get('restore_cold_ready_s'))} / {f(r.get('restore_cold_list_s'))}",
         f"ready / list 200; RSS {r.get('restore_cold_rss_mb')} MB"),
    ]
    lines = [f"| {'event log figure':<36} | {'value':>22} | {'context':<60} |",
             f"|{'-' * 38}|{'-' * 24}|{'-' * 62}|"]
    lines += [f"| {a:<36} | {b:>22} | {c:<60} |" for a, b, c in rows]
    others = {k: v for k, v in r["filing_outcomes"].items() if k not in ("routed", "filed")}
    if others:
        lines.append(f"\nfiling outcomes other than routed and filed: {others}")
    if "run_s" in r:
        lines.append(f"\n{r['run_s']} s; CPU {r['cpu_s_this_run']} s this run, "
                     f"{r['cpu_s_other_processes']} s other processes on the machine meanwhile "
                     f"(load average {r['load_avg_1m_before']} before)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="50,000 events, 5,000 webhooks, 300 queries of each kind")
    parser.add_argument("--events", type=int, help=f"events to load (full: {FULL_EVENTS:,})")
    parser.add_argument("--webhooks", type=int, help="webhooks of the 1,000 apps (full: 100,000)")
    parser.add_argument("--restarts", default="term,kill,cold",
                        help="which restarts of the event log to time (term, kill, cold; "
                             "cold restores the whole changelog: ~18 min after a million events)")
    args = parser.parse_args()

    async def until_done_or_sigterm() -> dict:
        # SIGTERM (a `timeout`, say) cancels the run: its broker and services
        # are stopped on the way out, as on Ctrl-C.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        restarts = tuple(how for how in args.restarts.split(",") if how)
        unknown = set(restarts) - {"term", "kill", "cold"}
        if unknown:
            parser.error(f"--restarts: unknown {sorted(unknown)} (term, kill, cold)")
        return await run(args.quick, args.events, args.webhooks, restarts)

    try:
        result = asyncio.run(until_done_or_sigterm())
    except asyncio.CancelledError:
        raise SystemExit("stopped by SIGTERM; its broker and services are stopped") from None
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["quick"] = args.quick
    latest = RESULTS / "latest.json"
    merged = json.loads(latest.read_text()) if latest.exists() else {}
    merged["event_log"] = result
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps(merged, indent=2) + "\n")
    print()
    print(table(result))
    print(f"\nwrote \"event_log\" into {latest}")


if __name__ == "__main__":
    main()
