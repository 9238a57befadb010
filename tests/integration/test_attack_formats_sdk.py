"""A hostile review of payload formats and the SDK (issue 14) against real
servers: ingest on the real broker, and a real local HTTP server. Each test
failed against the code as it was reviewed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from devtools.broker import free_port
from hookbus.aio import AsyncClient
from hookbus.client import Client
from hookbus.retry_policy import Backoff
from tests.conftest import auth, consumer_records
from tests.integration.conftest import APP, Api, current_record, serving

HOOKS = f"/v1/apps/{APP}/webhooks"
FAST = Backoff(attempts=4, base=0.05, cap=0.2)


async def test_a_newer_services_payload_format_is_not_repaired_away(
    api: Api, producer: AIOKafkaProducer,
) -> None:
    """A newer ingest (a rolling upgrade) changes a webhook to a format this
    version does not know. This ingest found the record unreadable and appended
    the older record again as a "repair": the change was undone for every
    reader, the newer services included."""
    status, created = await api.call("POST", HOOKS, headers=auth(APP), json={
        "target": "https://example.com/h", "payload_format": "chatwoot"})
    assert status == 201 and created is not None
    record, partition = await current_record(api.bootstrap, api.topics.webhooks, created["id"])
    record |= {"payload_format": "xml", "version": record["version"] + 1}
    await producer.send_and_wait(api.topics.webhooks, msgspec.json.encode(record),
                                 key=created["id"].encode(), partition=partition)
    await asyncio.sleep(1.5)  # in force within a second; a repair would be written by now
    status, body = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert status == 200 and body is not None, body
    assert (body["version"], body["payload_format"]) == (record["version"], "xml")
    last = [r for r in await consumer_records(api.bootstrap, api.topics.webhooks)
            if r.key == created["id"].encode()][-1]
    assert last.value is not None and msgspec.json.decode(last.value)["payload_format"] == "xml"


class DeleteAnswers:
    """A real HTTP server: the first DELETE of a webhook is written but answered
    503 (ingest's "not confirmed yet"); every later one finds it gone (404)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen += 1
        status, message = (503, "not confirmed yet") if self.seen == 1 else (404, "no webhook")
        return web.json_response({"error": {"code": status, "status": "X", "message": message,
                                            "details": []}}, status=status)


@pytest.fixture
async def deletes() -> AsyncIterator[DeleteAnswers]:
    answers = DeleteAnswers()
    app = web.Application()
    app.router.add_delete("/{tail:.*}", answers.handle)
    async with serving(app, answers.port):
        yield answers


async def test_a_retried_delete_that_finds_the_webhook_gone_succeeded(
    deletes: DeleteAnswers,
) -> None:
    """DELETE is retried on 503, and ingest answers 503 when the tombstone was
    written but not yet read back: the retry's 404 raised "not found" for a
    delete that had happened."""
    url = f"http://127.0.0.1:{deletes.port}"
    async with AsyncClient(url, "t", APP, backoff=FAST) as client:
        assert await client.delete_webhook("wh_1") is None
    deletes.seen = 0
    with Client(url, "t", APP, backoff=FAST) as sync:
        assert await asyncio.to_thread(sync.delete_webhook, "wh_1") is None
    assert deletes.seen == 2
