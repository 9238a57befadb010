"""What operators rely on, checked against a real scrape after real traffic:
each service's exposition passes `promtool check metrics`, every metric of
contract §8 is there, every metric the dashboard and the alerts query is
exposed, no label holds an app or webhook id; the alert rules pass
`promtool check rules` and their unit tests."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import aiohttp
from aiohttp import web

from devtools.broker import ROOT
from devtools.processes import Stack
from tests.conftest import Receiver
from tests.integration.client import Client

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "hookbus.json"
CONTRACT_METRICS = {
    "hookbus_ingest_events_total", "hookbus_http_request_duration_seconds_bucket",
    "hookbus_router_events_total", "hookbus_router_deliveries_total",
    "hookbus_deliveries_total", "hookbus_delivery_attempt_duration_seconds_bucket",
    "hookbus_event_to_delivery_seconds_bucket", "hookbus_consumer_lag",
}
APP = "app_ops"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True,
                          cwd=PROMETHEUS)


def queried_metrics() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    exprs.append((PROMETHEUS / "alerts.yml").read_text())
    return {name for expr in exprs for name in re.findall(r"\bhookbus_[a-z_]+", expr)}


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


async def test_metrics_after_real_traffic(stack: Stack, receiver: Receiver) -> None:
    async def failing(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500)

    receiver.respond("/failing", failing)
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        for path in ("/ok", "/failing"):
            await client.create_webhook(target=receiver.url(path), triggers=["*"])
        await asyncio.sleep(1.2)
        event = await client.publish("message.received")
        await client.call("POST", "/events", 400, json={"type": "nope"})
        await receiver.wait_for("/ok", event)
        await receiver.wait_count("/failing", 3)
        await asyncio.sleep(6)  # lag gauges refresh every few seconds

        exposed: set[str] = set()
        for service in stack.services.values():
            async with http.get(f"http://127.0.0.1:{service.port}/metrics") as response:
                text = await response.text()
            checked = promtool("check", "metrics", stdin=text)
            assert checked.returncode == 0, f"{service.name}: {checked.stdout}{checked.stderr}"
            samples = [line for line in text.splitlines() if line.startswith("hookbus_")]
            exposed |= {re.match(r"[a-z_]+", line)[0] for line in samples}
            labels = " ".join(re.findall(r'="([^"]*)"', "\n".join(samples)))
            assert "wh_" not in labels and APP not in labels, service.name

    assert CONTRACT_METRICS <= exposed, CONTRACT_METRICS - exposed
    assert queried_metrics() <= exposed, queried_metrics() - exposed
