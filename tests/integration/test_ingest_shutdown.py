"""Ingest's stop is bounded (issue 13), as the deliverer's is
(test_deliverer_shutdown.py): SIGTERMed while the broker does not answer (its
JVM frozen with SIGSTOP) and requests wait for it, ingest still exits 0 within
its grace period (REQUESTS_GRACE for the requests under way, then the close
budget), and nothing it acknowledged is lost: an event or a batch answered 202,
before the freeze or during the stop, is on `events` once the broker answers
again. The broker is the test's own: a frozen broker is fenced by its
controller, which the session's must not be."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from devtools.broker import Broker
from services.ingest.app import CLOSE_BUDGET, REQUESTS_GRACE
from tests.conftest import auth, consumer_records
from tests.integration.client import Client
from tests.integration.test_deliverer_shutdown import own_broker, stack_on, with_signal

__all__ = ["own_broker"]  # the fixture, used by name

APP = "app_stopping"
GRACE = 20  # deploy/k8s/base/ingest.yaml


async def _post(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, list[str]]:
    """The status and the ids a publish was answered with (0: no answer)."""
    try:
        async with http.post(url, json=body, headers=auth(APP)) as response:
            answer = await response.json(content_type=None) if response.status == 202 else {}
            return response.status, answer.get("ids") or [answer["id"]] if answer else []
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0, []


@pytest.mark.parametrize("thawed_after", [None, 3.0], ids=["frozen", "thawed-during-the-stop"])
async def test_ingest_stops_promptly_with_the_broker_frozen_and_keeps_what_it_acknowledged(
    own_broker: Broker, tmp_path: Path, thawed_after: float | None
) -> None:
    """`thawed_after`: the broker answers again that long after the SIGTERM, and
    the requests under way are answered 202 (the producers close after them)."""
    topics, stack = await stack_on(own_broker, tmp_path)
    stack.start("ingest")
    try:
        await stack.wait_ready()
        async with aiohttp.ClientSession() as http:
            event_id = await Client(http, stack.ingest_url, APP).publish("message.received",
                                                                         n=1)
            with_signal(own_broker, signal.SIGSTOP)
            # Under way when the SIGTERM comes: waiting for the frozen broker.
            base = f"{stack.ingest_url}/v1/apps/{APP}"
            under_way = [asyncio.ensure_future(_post(http, base + "/events", {
                "type": "message.received", "data": {"n": 2}})),
                asyncio.ensure_future(_post(http, base + "/events/batch", {"events": [
                    {"type": "message.received", "data": {"n": n}} for n in (3, 4)]}))]
            await asyncio.sleep(1)
            started = time.monotonic()
            stopped = asyncio.ensure_future(asyncio.to_thread(stack.terminate, "ingest", GRACE))
            if thawed_after is not None:
                await asyncio.sleep(thawed_after)
                with_signal(own_broker, signal.SIGCONT)
            code = await stopped
            took = time.monotonic() - started
            answers = await asyncio.gather(*under_way)
        with_signal(own_broker, signal.SIGCONT)
        written = [msgspec.json.decode(r.value)["id"]
                   for r in await consumer_records(own_broker.bootstrap, topics.events)]
    finally:
        with_signal(own_broker, signal.SIGCONT)
        stack.stop()

    log = stack.services["ingest"].log()
    assert code == 0, log[-3000:]
    # The requests under way get their time, the clients the close budget, and a
    # few short steps past it; all within the grace period.
    assert took < min(REQUESTS_GRACE + CLOSE_BUDGET + 3, GRACE), (took, log[-3000:])
    acknowledged = [event_id] + [i for status, ids in answers if 200 <= status < 300
                                 for i in ids]
    assert set(acknowledged) <= set(written), (answers, written, log[-3000:])
    if thawed_after is not None:
        assert [status for status, _ in answers] == [202, 202], (answers, log[-3000:])
