"""Logs and shutdown as operators need them: one JSON object per line with no
secret in it, and SIGTERM finishing the attempts under way, committing them,
and exiting 0."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from devtools.broker import Broker
from devtools.processes import Stack
from services.common.topics import Topics
from tests.conftest import SECRET_KEYS_TEXT, Receiver, records, token
from tests.integration.client import Client

APP = "app_life"


async def test_logs_are_json_lines_without_secrets(stack: Stack, receiver: Receiver,
                                                   kafka: Broker, topics: Topics) -> None:
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        hook = await client.create_webhook(
            target=receiver.url("/hook"), secret="whsec_c2VjcmV0LXNpZ25pbmcta2V5LWJ5dGVz",
            client_credentials={"client_id": "cid", "client_secret": "very-secret-client-secret",
                                "endpoint": receiver.url("/token")})
        rotated = await client.call("POST", f"/webhooks/{hook['id']}/secret/rotate", 200)
        await client.patch_webhook(hook["id"], client_credentials=None)
        await asyncio.sleep(1.2)
        event = await client.publish("message.received")
        got = await receiver.wait_for("/hook", event)
    stack.stop()

    secrets = [hook["secret"], rotated["secret"], "very-secret-client-secret",
               got.headers["webhook-signature"].split(" ")[0][3:],
               got.headers["x-hub-signature-256"][7:], token(APP),
               *(entry.partition(":")[2] for entry in SECRET_KEYS_TEXT.split(","))]
    # Nor in any Kafka record: webhooks (sealed), attempts, deliveries.
    for topic in (topics.webhooks, topics.attempts, topics.deliveries):
        for key, value in await records(kafka.bootstrap, topic):
            assert not any(secret.encode() in (value or b"") for secret in secrets), topic
    for service in stack.services.values():
        lines = service.log().splitlines()
        assert lines, service.name
        for line in lines:
            record = json.loads(line)  # every line is one JSON object
            assert record["service"] == service.service and record["level"], line
            assert not any(secret in line for secret in secrets), line
    delivered = [json.loads(line) for line in stack.services["deliverer"].log().splitlines()
                 if "delivered" in line]
    assert delivered[0]["event_id"] == event and delivered[0]["webhook_id"] == hook["id"]


async def test_sigterm_finishes_attempts_under_way_and_commits_them(
    stack: Stack, receiver: Receiver
) -> None:
    started, begun, finished = asyncio.Event(), [], []

    async def slow(request: web.Request, n: int) -> web.Response:
        begun.append(request.headers["webhook-id"])
        started.set()
        await asyncio.sleep(2)
        finished.append(request.headers["webhook-id"])
        return web.Response(status=204)

    receiver.respond("/slow", slow)
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        await client.create_webhook(target=receiver.url("/slow"))
        await asyncio.sleep(1.2)
        events = await client.call("POST", "/events/batch", 202, json={
            "events": [{"type": "message.received", "data": {"n": n}} for n in range(5)]})
        await asyncio.wait_for(started.wait(), 20)
        await asyncio.sleep(0.5)  # let the batch's other tasks start too
        deliverer = stack.services["deliverer"]
        deliverer.process.terminate()  # SIGTERM while attempts are under way
        assert await asyncio.to_thread(deliverer.process.wait, 30) == 0
        under_way = list(begun)
        assert under_way and sorted(finished) == sorted(under_way)  # all were finished

        stack.restart("deliverer")
        await stack.wait_ready()
        for _ in range(100):
            if len(finished) >= len(events["ids"]):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)
    # Committed before exiting: the new deliverer sends the rest, and none twice.
    assert sorted(finished) == sorted(events["ids"])
    assert sorted(r.headers["webhook-id"] for r in receiver.on("/slow")) == sorted(events["ids"])
