"""`python -m devtools.dashboard`: the Grafana dashboard's panels, drawn from a
real scrape, to docs/dashboard.png.

Runs a stack of its own with a Prometheus server (Debian's `prometheus`)
scraping it every 2 s, sends two minutes of traffic (three healthy endpoints,
one failing, one DISMISS), then asks Prometheus for every query of
deploy/grafana/hookbus.json over that time and draws the panels. The queries
are the dashboard's own, except that their `[5m]`/`[1h]` windows are shortened
to `[30s]`/`[2m]` to suit a two-minute run (the image says so)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from devtools.broker import ROOT, Broker, free_port
from devtools.processes import Stack
from devtools.receivers import Receivers
from services.common.topics import Topics, ensure_topics
from services.ingest.auth import issue_token

DASHBOARD = ROOT / "deploy" / "grafana" / "hookbus.json"
OUTPUT = ROOT / "docs" / "dashboard.png"
SECRET = "dashboard-secret-of-32-bytes-or-more"
APP = "app_dashboard"
SECONDS = 120


def shorten(expr: str) -> str:
    return expr.replace("[5m]", "[30s]").replace("[1h]", "[2m]").replace("[10m]", "[1m]")


async def traffic(stack: Stack, receivers: Receivers, seconds: float) -> None:
    headers = {"Authorization": f"Bearer {issue_token(SECRET, scope='app', app_id=APP)}"}
    async with aiohttp.ClientSession() as http:
        webhooks = [{"target": receivers.url(f"/ok{n}")} for n in range(3)]
        webhooks += [{"target": "http://127.0.0.1:1/refused-port"},
                     {"target": receivers.url("/d"), "target_type": "DISMISS"}]
        for body in webhooks:
            async with http.post(f"{stack.ingest_url}/v1/apps/{APP}/webhooks", headers=headers,
                                 json=body | {"triggers": ["*"]}) as response:
                assert response.status == 201, await response.text()
        await asyncio.sleep(1.5)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            size = 20 + int(15 * (1 + (n % 20) / 10))  # a varying rate
            async with http.post(f"{stack.ingest_url}/v1/apps/{APP}/events/batch", headers=headers,
                                 json={"events": [{"type": "message.received"}] * size}) as r:
                assert r.status == 202
            n += 1
            await asyncio.sleep(1)


async def query_range(http: aiohttp.ClientSession, base: str, expr: str, start: float,
                      end: float) -> list[dict]:
    params = {"query": shorten(expr), "start": str(start), "end": str(end), "step": "2"}
    async with http.get(f"{base}/api/v1/query_range", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


def draw(panels: list[dict], data: dict[int, list[tuple[str, list[dict]]]], start: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(4, 3, figsize=(16, 13))
    for axis, panel in zip(axes.flat, panels, strict=False):
        axis.set_title(panel["title"], fontsize=10)
        series = data[panel["id"]]
        if panel["type"] == "stat":
            values = [float(s["values"][-1][1]) for _, found in series for s in found
                      if s["values"]]
            axis.text(0.5, 0.45, f"{values[-1]:.3g}" if values else "no data",
                      ha="center", va="center", fontsize=28)
            axis.set_axis_off()
            continue
        for template, found in series:
            for s in found:
                xs = [float(t) - start for t, _ in s["values"]]
                ys = [float(v) if v not in ("NaN", "+Inf") else float("nan") for _, v in s["values"]]
                axis.plot(xs, ys, label=legend(template, s["metric"])[:40])
        axis.set_xlabel("seconds", fontsize=8)
        axis.set_ylabel(panel["fieldConfig"]["defaults"]["unit"], fontsize=8)
        axis.tick_params(labelsize=8)
        if axis.lines:
            axis.legend(fontsize=7)
    figure.suptitle("Hookbus dashboard (deploy/grafana/hookbus.json) from a real 2-minute scrape; "
                    "rate windows shortened to 30s", fontsize=11)
    figure.tight_layout()
    OUTPUT.parent.mkdir(exist_ok=True)
    figure.savefig(OUTPUT, dpi=80)


async def main() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    with tempfile.TemporaryDirectory(prefix="hookbus-dashboard-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        receivers = Receivers()
        await receivers.start()
        topics = Topics("dash.", (1, 2, 5))
        await ensure_topics(broker.bootstrap, topics.specs(), partitions=6)
        stack = Stack(broker.bootstrap, topics.prefix, workdir, HOOKBUS_JWT_SECRET=SECRET,
                      HOOKBUS_ALLOW_HTTP="true", HOOKBUS_ALLOWED_PRIVATE_CIDRS="127.0.0.0/8",
                      HOOKBUS_RETRY_SCHEDULE="1s,2s,5s", HOOKBUS_LOG_LEVEL="WARNING")
        for service in ("ingest", "router", "deliverer"):
            stack.start(service)
        prometheus_port = free_port()
        config = workdir / "prometheus.yml"
        jobs = [f"  - job_name: hookbus-{s.service}\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{s.port}']\n" for s in stack.services.values()]
        config.write_text("global:\n  scrape_interval: 2s\nscrape_configs:\n" + "".join(jobs))
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await stack.wait_ready(120)
            start = time.time()
            print(f"sending {SECONDS}s of traffic, scraped every 2s ...", flush=True)
            await traffic(stack, receivers, SECONDS)
            await asyncio.sleep(6)
            end = time.time()
            base = f"http://127.0.0.1:{prometheus_port}"
            data = {}
            async with aiohttp.ClientSession() as http:
                for panel in panels:
                    data[panel["id"]] = [
                        (t["legendFormat"], await query_range(http, base, t["expr"], start, end))
                        for t in panel["targets"]
                    ]
            draw(panels, data, start)
            print(f"wrote {OUTPUT}")
        finally:
            prometheus.terminate()
            prometheus.wait(30)
            stack.stop()
            await receivers.stop()
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
