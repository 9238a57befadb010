"""The event log (issue 11) on the real broker, through ingest's API: an event's
full story (matched, retried, dead, replayed, resent), the webhook's stats and
attempts, cross-app refusals, bad filters, and a SIGKILL of the instance that
owns an app's partition while it is being queried."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from devtools.processes import Stack
from services.ingest.auth import issue_token
from tests.conftest import JWT_SECRET, Receiver, auth, make_stack
from tests.integration.conftest import assert_error

APP = "app_log"


async def call(http: aiohttp.ClientSession, stack: Stack, method: str, path: str,
               app: str = APP, **kwargs: object) -> tuple[int, dict]:
    async with http.request(method, stack.ingest_url + path, headers=auth(app),
                            **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def eventually(probe, timeout: float = 60, every: float = 0.3):  # type: ignore[no-untyped-def]
    """Until `probe()` returns something true; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not reached in {timeout}s; last: {last!r}")


async def test_an_events_full_story_through_the_api(stack: Stack, receiver: Receiver,
                                                    http: aiohttp.ClientSession) -> None:
    healthy = {"fail": True}

    async def flaky(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500 if healthy["fail"] else 200, text=f"answer {n}")

    receiver.respond("/flaky", flaky)
    base = f"/v1/apps/{APP}"
    status, good = await call(http, stack, "POST", base + "/webhooks",
                              json={"target": receiver.url("/good"), "triggers": ["*"]})
    assert status == 201, good
    status, bad = await call(http, stack, "POST", base + "/webhooks",
                             json={"target": receiver.url("/flaky"), "triggers": ["*"]})
    assert status == 201, bad
    status, accepted = await call(http, stack, "POST", base + "/events", json={
        "type": "message.received", "data": {"text": "hello"}})
    assert status == 202, accepted
    event_id = accepted["id"]
    await receiver.wait_for("/good", event_id)

    async def dead_and_delivered() -> dict | None:
        status, page = await call(http, stack, "GET", base + "/events")
        if status != 200 or not page["events"]:
            return None
        counts = page["events"][0]["deliveries"]
        return page if counts["dead"] == 1 and counts["delivered"] == 1 else None

    page = await eventually(dead_and_delivered)
    [listed] = page["events"]
    assert listed["id"] == event_id and listed["type"] == "message.received"
    assert page["next"] is None

    status, failed = await call(http, stack, "GET", base + "/events?status=failed")
    assert status == 200 and [e["id"] for e in failed["events"]] == [event_id]
    status, delivered_only = await call(http, stack, "GET", base + "/events?status=pending")
    assert status == 200 and delivered_only["events"] == []

    status, detail = await call(http, stack, "GET", f"{base}/events/{event_id}")
    assert status == 200, detail
    assert detail["event"]["id"] == event_id and detail["event"]["data"] == {"text": "hello"}
    delivered = (await receiver.wait_for("/good", event_id)).body
    import json
    assert json.loads(delivered) == detail["event"]
    by_webhook = {d["webhook_id"]: d for d in detail["deliveries"]}
    assert by_webhook[good["id"]]["status"] == "delivered"
    assert by_webhook[bad["id"]]["status"] == "dead"
    assert [(a["result"], a["attempt"]) for a in by_webhook[bad["id"]]["attempts"]
            if a["result"] != "deferred"] == [
        ("failure", 1), ("failure", 2), ("failure", 3), ("dead", 3)]
    first = by_webhook[bad["id"]]["attempts"][0]
    assert first["status_code"] == 500 and first["response"] == "answer 1"
    assert first["latency_ms"] > 0

    status, stats = await call(http, stack, "GET", f"{base}/webhooks/{bad['id']}/stats")
    assert status == 200, stats
    assert (stats["hour"]["failed"], stats["hour"]["dead"], stats["hour"]["delivered"]) == (
        3, 1, 0)
    assert stats["failure_streak"] == 3 and stats["dead_letters"] == 1
    assert stats["last_failure_at"] and stats["last_success_at"] is None
    assert stats["hour"]["success_rate"] == 0.0 and stats["latency"]["p50_ms"] is not None

    status, attempts = await call(http, stack, "GET",
                                  f"{base}/webhooks/{bad['id']}/attempts?limit=2")
    assert status == 200 and [a["result"] for a in attempts["attempts"]] == ["dead", "failure"]
    status, more = await call(http, stack, "GET", f"{base}/webhooks/{bad['id']}/attempts"
                                                  f"?limit=100&cursor={attempts['next_cursor']}")
    assert status == 200 and [a["attempt"] for a in more["attempts"]
                              if a["result"] == "failure"] == [2, 1]

    # Replayed: the endpoint is mended, its dead letters go back as a job.
    healthy["fail"] = False
    status, job = await call(http, stack, "POST", f"{base}/webhooks/{bad['id']}/replay")
    assert status == 202, job
    assert job["state"] == "running" and job["id"]

    async def job_done() -> dict | None:
        status, shown = await call(http, stack, "GET",
                                   f"{base}/webhooks/{bad['id']}/replay/{job['id']}")
        assert status == 200, shown
        return shown if shown["state"] == "done" else None

    done = await eventually(job_done)
    assert done["replayed"] == 1 and done["scanned"] >= 1 and done["finished_at"]

    async def replayed() -> dict | None:
        status, detail = await call(http, stack, "GET", f"{base}/events/{event_id}")
        statuses = {d["webhook_id"]: d["status"] for d in detail["deliveries"]}
        return detail if statuses[bad["id"]] == "delivered" else None

    detail = await eventually(replayed)
    origins = [a.get("origin", "") for d in detail["deliveries"] if d["webhook_id"] == bad["id"]
               for a in d["attempts"]]
    assert f"replay:{job['id']}" in origins
    status, stats = await call(http, stack, "GET", f"{base}/webhooks/{bad['id']}/stats")
    assert stats["dead_letters"] == 0 and stats["failure_streak"] == 0
    status, failed = await call(http, stack, "GET", base + "/events?status=failed")
    assert failed["events"] == []

    # Resent: a new series to one webhook, with the same webhook-id.
    before = len([r for r in receiver.on("/good") if r.headers["webhook-id"] == event_id])
    status, resent = await call(http, stack, "POST", f"{base}/events/{event_id}/resend",
                                json={"webhook_id": good["id"]})
    assert status == 202, resent
    assert resent == {"event_id": event_id, "webhook_ids": [good["id"]]}
    await eventually(lambda: _count(receiver, "/good", event_id, before + 1))

    async def resend_filed() -> bool:
        _, detail = await call(http, stack, "GET", f"{base}/events/{event_id}")
        rows = [a for d in detail["deliveries"] if d["webhook_id"] == good["id"]
                for a in d["attempts"]]
        return any(a.get("origin", "").startswith("resend:") and a["result"] == "success"
                   for a in rows)

    await eventually(resend_filed)


async def _count(receiver: Receiver, path: str, event_id: str, at_least: int) -> bool:
    return len([r for r in receiver.on(path) if r.headers["webhook-id"] == event_id]) >= at_least


async def test_routes_refuse_other_apps_and_bad_input(stack: Stack, receiver: Receiver,
                                                     http: aiohttp.ClientSession) -> None:
    base = f"/v1/apps/{APP}"
    status, webhook = await call(http, stack, "POST", base + "/webhooks",
                                 json={"target": receiver.url("/ok")})
    assert status == 201
    status, accepted = await call(http, stack, "POST", base + "/events", json={
        "type": "message.received", "data": {}})
    event_id = accepted["id"]
    await eventually(lambda: _listed(http, stack, event_id))
    wh = webhook["id"]
    routes = [("GET", base + "/events"), ("GET", f"{base}/events/{event_id}"),
              ("POST", f"{base}/events/{event_id}/resend"),
              ("GET", f"{base}/webhooks/{wh}/stats"), ("GET", f"{base}/webhooks/{wh}/attempts"),
              ("POST", f"{base}/webhooks/{wh}/replay"),
              ("GET", f"{base}/webhooks/{wh}/replay/rj_1")]
    for method, path in routes:
        status, body = await call(http, stack, method, path, app="app_intruder")
        assert_error(status, body, 403)
        async with http.request(method, stack.ingest_url + path) as response:
            assert response.status == 401, path
    # A read-only token (a portal link's) reads, and cannot write, whether it
    # goes through ingest or straight to an event log instance.
    read_only = {"Authorization": "Bearer " + issue_token(
        JWT_SECRET, scope="app", app_id=APP, lifetime=600, read_only=True)}
    for url in [stack.ingest_url, *stack.eventlog_urls]:
        for method, path in routes:
            async with http.request(method, url + path, headers=read_only,
                                    json={} if method == "POST" else None) as response:
                body = await response.json(content_type=None)
                if method == "POST":
                    assert_error(response.status, body, 403)
                    assert "read-only" in body["error"]["message"], (url, path)
                else:
                    assert response.status != 403, (url, path, body)

    for query, field in [("limit=0", "limit"), ("limit=x", "limit"), ("limit=100000", "limit"),
                         ("status=bogus", "status"), ("since=yesterday", "since"),
                         ("until=2026-13-01T00:00:00Z", "until"),
                         ("since=2026-11-23T12:00:00Z&until=2026-11-22T12:00:00Z", "until"),
                         ("cursor=not-a-cursor", "cursor"), ("cursor=" + "A" * 40, "cursor")]:
        status, body = await call(http, stack, "GET", f"{base}/events?{query}")
        assert_error(status, body, 400, field)
    # A cursor of another app's list is not one of this app's.
    other = "app_other"
    status, body = await call(http, stack, "GET", f"/v1/apps/{other}/events?limit=1", app=other)
    assert status == 200
    status, page = await call(http, stack, "GET", f"{base}/events?limit=1")
    if page["next"]:
        status, body = await call(http, stack, "GET",
                                  f"/v1/apps/{other}/events?cursor={page['next']}", app=other)
        assert_error(status, body, 400, "cursor")
    # (Superscript two and Arabic-Indic three pass str.isdigit(), and int() refuses them.)
    for cursor in ("zz", "%C2%B2", "%D9%A3", "1" * 20, "%FF"):
        status, body = await call(http, stack, "GET",
                                  f"{base}/webhooks/{wh}/attempts?cursor={cursor}")
        assert_error(status, body, 400, "cursor")
    status, body = await call(http, stack, "GET", f"{base}/events/evt_nope")
    assert_error(status, body, 404)
    status, body = await call(http, stack, "POST", f"{base}/events/evt_nope/resend")
    assert_error(status, body, 404)
    status, body = await call(http, stack, "POST", f"{base}/events/{event_id}/resend",
                              json={"webhook_id": "wh_not_matched"})
    assert_error(status, body, 404)
    status, body = await call(http, stack, "POST", f"{base}/events/{event_id}/resend",
                              json={"webhook": wh})
    assert_error(status, body, 400)
    status, body = await call(http, stack, "GET", f"{base}/webhooks/wh_nope/stats")
    assert_error(status, body, 404)
    status, body = await call(http, stack, "GET", f"{base}/webhooks/{wh}/replay/rj_nope")
    assert_error(status, body, 404)
    status, body = await call(http, stack, "POST", f"{base}/webhooks/{wh}/replay",
                              json={"since": "2026-11-23T12:00:00Z",
                                    "until": "2026-11-22T12:00:00Z"})
    assert_error(status, body, 400, "until")


async def _listed(http: aiohttp.ClientSession, stack: Stack, event_id: str,
                  app: str = APP) -> bool:
    status, page = await call(http, stack, "GET", f"/v1/apps/{app}/events?limit=250", app=app)
    return status == 200 and event_id in [e["id"] for e in page["events"]]


@pytest.mark.partitions(4)
async def test_killing_the_owner_of_a_partition_loses_nothing(
        kafka, topics, tmp_path, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    for name in ("eventlog-1", "eventlog-2"):
        stack.start("eventlog", name)
    for name in ("ingest", "router", "deliverer"):
        stack.start(name)
    try:
        await stack.wait_ready(90)
        apps = [f"app_{i}" for i in range(8)]
        published: dict[str, list[str]] = {}
        for app in apps:
            status, _ = await call(http, stack, "POST", f"/v1/apps/{app}/webhooks", app=app,
                                   json={"target": receiver.url(f"/{app}")})
            assert status == 201
            published[app] = []
            for n in range(5):
                status, accepted = await call(http, stack, "POST", f"/v1/apps/{app}/events",
                                              app=app, json={"type": "message.received",
                                                             "data": {"n": n}})
                assert status == 202
                published[app].append(accepted["id"])

        async def all_listed() -> bool:
            for app in apps:
                status, page = await call(http, stack, "GET", f"/v1/apps/{app}/events", app=app)
                if status != 200 or sorted(e["id"] for e in page["events"]) != sorted(
                        published[app]):
                    return False
            return True

        await eventually(all_listed, timeout=90)
        async with http.get(stack.eventlog_urls[0] + "/internal/owners") as response:
            owners = (await response.json())["owners"]
        victim_url = stack.eventlog_urls[0]
        assert victim_url in owners.values(), owners
        started = time.monotonic()
        stack.kill("eventlog-1")
        answers: dict[int, int] = {}
        # Queries go on during the takeover: each answers 200 or a clean 503.
        while time.monotonic() - started < 90:
            statuses = []
            for app in apps:
                status, body = await call(http, stack, "GET", f"/v1/apps/{app}/events", app=app)
                assert status in (200, 503), (status, body)
                if status == 503:
                    assert_error(status, body, 503)
                answers[status] = answers.get(status, 0) + 1
                statuses.append(status)
            if all(s == 200 for s in statuses) and await all_listed():
                break
            await asyncio.sleep(0.2)
        recovered = time.monotonic() - started
        assert await all_listed(), "events were lost with the instance"
        print(f"queries answered again {recovered:.1f}s after the SIGKILL; answers {answers}")
        # And what comes after the takeover is filed by the survivor.
        status, accepted = await call(http, stack, "POST", f"/v1/apps/{apps[0]}/events",
                                      app=apps[0], json={"type": "message.received", "data": {}})
        await eventually(lambda: _listed(http, stack, accepted["id"], apps[0]), timeout=60)
    finally:
        stack.stop()
