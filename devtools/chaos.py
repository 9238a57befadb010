"""`make chaos`: faults injected while events flow, and a count of what arrived.

    python -m devtools.chaos [--events 10000] [--faults ingest,router,deliverer,eventlog,broker]

Each fault is its own scenario on a fresh broker: two routers and two
deliverers share the work, three webhooks match every event, publishers post
through ingest (retrying with the same `Idempotency-Key`, so a retried publish
keeps its event id), and a supervisor restarts any instance that dies, as
Kubernetes would; two event log instances hold the event log's partitions.
Midway the fault strikes: SIGKILL of ingest, of a router, of a deliverer, of
the event log instance that owns the app's partition, SIGKILL of the broker followed by a restart, or a rolling restart of
both deliverers (SIGTERM one, wait until its replacement is ready, then the
other) while a fourth webhook, on an endpoint that answers after two seconds,
receives about 150 of the events: more than its per-endpoint slots finish within
a rebalance, so attempts are under way and waiting at every revocation. Then the run waits
for every published event to reach every webhook and prints published,
delivered (distinct webhook-ids per receiver), lost and duplicates; then it
reads the event log through the API until every published event is listed
with every delivery `delivered`, and prints how many are not (`log_lost`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from devtools.broker import Broker, free_port
from devtools.processes import Stack
from devtools.receivers import Receivers
from services.common.topics import Topics, ensure_topics
from services.ingest.auth import issue_token

FAULTS = ("ingest", "router", "deliverer", "eventlog", "broker", "rolling")
PATHS = ("/a", "/b", "/c")
SLOW_PATH = "/slow"  # only in the rolling scenario, answered after SLOW_SECONDS
SLOW_TASKS = 150     # about this many events go to it, whatever the run's size
SLOW_SECONDS = 2.0
SECRET = "chaos-secret-of-at-least-32-bytes!"
APP = "app_chaos"


@dataclass
class Result:
    fault: str
    published: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    # Published events the event log does not list with all deliveries delivered.
    log_lost: int = 0
    publish_retries: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)  # of SIGTERMed instances
    seconds: float = 0.0


def slow_every(count: int) -> int:
    return max(2, count // SLOW_TASKS)


def event_type(n: int, count: int, slow: bool) -> str:
    """Every `slow_every(count)`-th event also goes to the slow endpoint."""
    return "message.sent" if slow and n % slow_every(count) == 0 else "message.received"


async def _publish_all(stack: Stack, count: int, result: Result, ids: dict[str, str],
                       progress: asyncio.Event, slow: bool, workers: int = 8) -> None:
    """Publish `count` events; `ids` maps each accepted event id to its type."""
    headers = {"Authorization": f"Bearer {issue_token(SECRET, scope='app', app_id=APP)}"}
    numbers = iter(range(count))
    timeout = aiohttp.ClientTimeout(total=10)

    async def worker(http: aiohttp.ClientSession) -> None:
        for n in numbers:
            while True:
                try:
                    async with http.post(
                        f"{stack.ingest_url}/v1/apps/{APP}/events",
                        json={"type": event_type(n, count, slow), "data": {"n": n}},
                        headers=headers | {"Idempotency-Key": f"chaos-{n}"},
                    ) as response:
                        if response.status == 202:
                            ids[(await response.json())["id"]] = event_type(n, count, slow)
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                result.publish_retries += 1
                await asyncio.sleep(0.2)
            if len(ids) >= count // 2:
                progress.set()

    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))


async def _supervise(stack: Stack, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name in stack.restart_dead():
            print(f"  supervisor: {name} had exited; restarted it", flush=True)
        await asyncio.sleep(0.5)


async def _strike(fault: str, stack: Stack, broker: Broker, result: Result) -> None:
    """SIGKILL one instance (the supervisor restarts it), the broker (restarted
    here), or roll the deliverers one after the other."""
    print(f"  fault: {fault}", flush=True)
    if fault == "rolling":
        for name in ("deliverer-1", "deliverer-2"):
            code = result.exit_codes[name] = await asyncio.to_thread(stack.terminate, name)
            print(f"  {name} exited {code} on SIGTERM; waiting for its replacement", flush=True)
            await stack.wait_instance_ready(name, 120)  # the supervisor restarts it
        return
    if fault == "broker":
        broker.kill()
        await asyncio.sleep(2)
        await asyncio.to_thread(broker.start)
        return
    if fault == "eventlog":
        stack.kill(await _owner_of_app(stack))
        return
    stack.kill({"ingest": "ingest", "router": "router-1", "deliverer": "deliverer-1"}[fault])


async def _owner_of_app(stack: Stack) -> str:
    """The name of the event log instance that owns APP's partition."""
    from services.eventlog.keys import partition_of
    async with aiohttp.ClientSession() as http:
        for url in stack.eventlog_urls:
            try:
                async with http.get(url + "/internal/owners") as response:
                    answer = await response.json()
            except aiohttp.ClientError:
                continue
            owner = answer["owners"].get(str(partition_of(APP, answer["partitions"])))
            for name, service in stack.services.items():
                if service.service == "eventlog" and url_of(service.port) == owner:
                    return name
    return "eventlog-1"


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}"


async def _log_lost(stack: Stack, ids: dict[str, str], deliveries: dict[str, int],
                    settle: float) -> int:
    """Published events the event log does not list with every delivery
    delivered, once it has had `settle` seconds to catch up."""
    headers = {"Authorization": f"Bearer {issue_token(SECRET, scope='app', app_id=APP)}"}
    deadline = time.monotonic() + settle
    missing = len(ids)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        while True:
            done: set[str] = set()
            cursor = None
            try:
                while True:
                    url = f"{stack.ingest_url}/v1/apps/{APP}/events?limit=250"
                    async with http.get(url + (f"&cursor={cursor}" if cursor else ""),
                                        headers=headers) as response:
                        if response.status != 200:
                            raise aiohttp.ClientError(f"HTTP {response.status}")
                        page = await response.json()
                    done |= {e["id"] for e in page["events"]
                             if e["deliveries"]["delivered"] == deliveries.get(e["id"], -1)}
                    cursor = page["next"]
                    if cursor is None:
                        break
                missing = len(ids.keys() - done)
            except (aiohttp.ClientError, TimeoutError) as exc:
                print(f"  event log: {exc!r}", flush=True)
            print(f"  event log: {len(ids) - missing}/{len(ids)} listed as delivered",
                  flush=True)
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(3)


async def scenario(fault: str, events: int, workdir: Path, settle: float = 240) -> Result:
    result = Result(fault=fault)
    started = time.monotonic()
    broker = Broker(workdir / "kafka", free_port(), free_port())
    await asyncio.to_thread(broker.start)
    slow = fault == "rolling"
    receivers = Receivers(slow_seconds=SLOW_SECONDS)
    await receivers.start()
    topics = Topics("chaos.", (1, 2, 5, 10, 30))
    await ensure_topics(broker.bootstrap, topics.specs(), partitions=6)
    stack = Stack(
        broker.bootstrap, topics.prefix, workdir,
        HOOKBUS_JWT_SECRET=SECRET, HOOKBUS_ALLOW_HTTP="true",
        HOOKBUS_ALLOWED_PRIVATE_CIDRS="127.0.0.0/8", HOOKBUS_RETRY_SCHEDULE="1s,2s,5s,10s,30s",
        HOOKBUS_DELIVERY_TIMEOUT="5s", HOOKBUS_LOG_LEVEL="WARNING",
    )
    for service, name in [("eventlog", "eventlog-1"), ("eventlog", "eventlog-2"),
                          ("ingest", "ingest"), ("router", "router-1"), ("router", "router-2"),
                          ("deliverer", "deliverer-1"), ("deliverer", "deliverer-2")]:
        stack.start(service, name)
    stop_supervising = asyncio.Event()
    try:
        await stack.wait_ready(120)
        headers = {"Authorization": f"Bearer {issue_token(SECRET, scope='app', app_id=APP)}"}
        async with aiohttp.ClientSession() as http:
            subscriptions = [(path, ["message.received", "message.sent"]) for path in PATHS]
            if slow:
                subscriptions.append((SLOW_PATH, ["message.sent"]))
            for path, triggers in subscriptions:
                async with http.post(
                    f"{stack.ingest_url}/v1/apps/{APP}/webhooks", headers=headers,
                    json={"target": receivers.url(path), "triggers": triggers},
                ) as response:
                    assert response.status == 201, await response.text()
        await asyncio.sleep(1.5)
        supervisor = asyncio.create_task(_supervise(stack, stop_supervising))
        ids: dict[str, str] = {}
        halfway = asyncio.Event()
        publishing = asyncio.create_task(
            _publish_all(stack, events, result, ids, halfway, slow))
        await halfway.wait()
        await _strike(fault, stack, broker, result)
        await publishing
        result.published = len(ids)
        wanted = {(path, event_id) for path in PATHS for event_id in ids}
        wanted |= {(SLOW_PATH, event_id) for event_id, type_ in ids.items()
                   if type_ == "message.sent"} if slow else set()
        result.expected = len(wanted)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            missing = len(wanted - receivers.arrivals.keys())
            print(f"  {result.expected - missing}/{result.expected} delivered", flush=True)
            if not missing:
                break
            await asyncio.sleep(5)
        await asyncio.sleep(2)  # duplicates still on their way
        result.delivered = len(wanted & receivers.arrivals.keys())
        result.lost = result.expected - result.delivered
        result.duplicates = sum(len(times) - 1 for key, times in receivers.arrivals.items()
                                if key in wanted)
        per_event = {event_id: len(PATHS) + (slow and type_ == "message.sent")
                     for event_id, type_ in ids.items()}
        result.log_lost = await _log_lost(stack, ids, per_event, settle=120)
        stop_supervising.set()
        await supervisor
        result.restarts = {n: s.restarts for n, s in stack.services.items() if s.restarts}
        result.seconds = round(time.monotonic() - started, 1)
        return result
    finally:
        stop_supervising.set()
        stack.stop()
        await receivers.stop()
        broker.stop()


async def run(events: int, faults: list[str], out: Path | None) -> list[Result]:
    results = []
    for fault in faults:
        print(f"scenario {fault}: {events} events", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"hookbus-chaos-{fault}-") as tmp:
            results.append(await scenario(fault, events, Path(tmp)))
        print(json.dumps(asdict(results[-1])), flush=True)
    print(f"\n{'fault':<10} {'published':>9} {'expected':>9} {'delivered':>9} {'lost':>5} "
          f"{'duplicates':>10} {'log_lost':>8} {'seconds':>8}")
    for r in results:
        print(f"{r.fault:<10} {r.published:>9} {r.expected:>9} {r.delivered:>9} {r.lost:>5} "
              f"{r.duplicates:>10} {r.log_lost:>8} {r.seconds:>8}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/chaos.json"))
    args = parser.parse_args()
    results = asyncio.run(run(args.events, args.faults.split(","), args.out))
    return 1 if any(r.lost or r.log_lost for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
