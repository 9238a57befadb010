"""Per-webhook delivery rules not covered elsewhere: custom headers are sent,
and a webhook failing every attempt for HOOKBUS_DISABLE_AFTER is disabled."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from devtools.processes import Stack
from tests.conftest import Receiver
from tests.integration.client import Client

APP = "app_rules"


async def test_custom_headers_are_sent_beside_ours(stack: Stack, receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        await client.create_webhook(target=receiver.url("/h"),
                                    headers={"X-Team": "crm", "Authorization": "Token abc"})
        await asyncio.sleep(1.2)
        event = await client.publish("message.received")
        got = await receiver.wait_for("/h", event)
    assert got.headers["X-Team"] == "crm" and got.headers["Authorization"] == "Token abc"
    assert got.headers["Content-Type"] == "application/json"


@pytest.mark.stack_env(HOOKBUS_DISABLE_AFTER="3s")
async def test_a_webhook_failing_every_attempt_long_enough_is_disabled(
    stack: Stack, receiver: Receiver
) -> None:
    async def failing(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500)

    receiver.respond("/failing", failing)
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        hook = await client.create_webhook(target=receiver.url("/failing"))
        await asyncio.sleep(1.2)
        async with asyncio.timeout(40):
            while (await client.call("GET", f"/webhooks/{hook['id']}", 200))["enabled"]:
                await client.publish("message.received")
                await asyncio.sleep(1)
        disabled = await client.call("GET", f"/webhooks/{hook['id']}", 200)
    assert "every attempt failed for 3s" in disabled["disabled_reason"]
