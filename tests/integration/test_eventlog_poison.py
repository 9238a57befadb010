"""Poison and forged records on the event log's input topics: skipped and
counted, nothing filed from them, and the event log goes on filing."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer

from devtools.processes import Stack
from schemas.attempts import Attempt
from schemas.eventlog import Routed, update_encoder
from services.common.topics import Topics
from services.eventlog.keys import partition_of
from tests.conftest import Receiver, auth
from tests.integration.test_eventlog import call, eventually

APP = "app_poison"


async def test_poison_and_misplaced_records_are_skipped_and_filing_goes_on(
        stack: Stack, topics: Topics, producer: AIOKafkaProducer, receiver: Receiver,
        http: aiohttp.ClientSession) -> None:
    status, webhook = await call(http, stack, "POST", f"/v1/apps/{APP}/webhooks", app=APP,
                                 json={"target": receiver.url("/p")})
    assert status == 201
    attempt = Attempt(webhook_id=webhook["id"], event_id="evt_forged", event_type="message.sent",
                      attempt=1, at=datetime.now(UTC), result="success", app_id=APP)
    for value in (None, b"\xff\xfe", b"[1, 2", b"{}", msgspec.json.encode(
            msgspec.structs.replace(attempt, app_id=""))):
        await producer.send_and_wait(topics.attempts, value, key=webhook["id"].encode())
    # A success claimed for an event the router never matched to this webhook.
    await producer.send_and_wait(topics.attempts, msgspec.json.encode(attempt),
                                 key=webhook["id"].encode())
    partitions = len(await producer.partitions_for(topics.eventlog_updates))
    for value in (None, b"\xff", b'{"type": "nope"}', b"[]"):
        await producer.send_and_wait(topics.eventlog_updates, value, key=APP.encode())
    # A Routed for APP in a partition that is not APP's (another partitioner).
    wrong = (partition_of(APP, partitions) + 1) % partitions
    misplaced = Routed(app_id=APP, event_id="evt_misplaced", event_type="message.sent",
                       created_at=datetime.now(UTC), source="events", partition=0, offset=0)
    await producer.send_and_wait(topics.eventlog_updates, update_encoder.encode(misplaced),
                                 key=APP.encode(), partition=wrong)

    status, accepted = await call(http, stack, "POST", f"/v1/apps/{APP}/events", app=APP,
                                  json={"type": "message.received", "data": {}})
    assert status == 202

    async def delivered() -> dict | None:
        status, page = await call(http, stack, "GET", f"/v1/apps/{APP}/events", app=APP)
        if status == 200 and page["events"] and \
                page["events"][0]["deliveries"]["delivered"] == 1:
            return page
        return None

    page = await eventually(delivered)
    assert [e["id"] for e in page["events"]] == [accepted["id"]]  # not the misplaced one
    status, body = await call(http, stack, "GET", f"/v1/apps/{APP}/events/evt_forged", app=APP)
    assert status == 404
    status, attempts = await call(http, stack, "GET",
                                  f"/v1/apps/{APP}/webhooks/{webhook['id']}/attempts", app=APP)
    assert [a["event_id"] for a in attempts["attempts"]] == [accepted["id"]]
    eventlog = stack.services["eventlog"]
    assert eventlog.alive and eventlog.restarts == 0
    async with http.get(f"{stack.eventlog_urls[0]}/metrics", headers=auth(APP)) as response:
        metrics = await response.text()

    def count(name: str, outcome: str) -> float:
        found = re.search(rf'^{name}{{outcome="{outcome}"}} (\S+)$', metrics, re.M)
        return float(found[1]) if found else 0.0

    assert count("hookbus_eventlog_rekeyed_total", "skipped") >= 4
    assert count("hookbus_eventlog_rekeyed_total", "no_app") >= 1
    assert count("hookbus_eventlog_updates_total", "skipped") >= 4
    assert count("hookbus_eventlog_updates_total", "misplaced") == 1
    assert count("hookbus_eventlog_updates_total", "orphaned") >= 1
