"""End to end on the real broker, the services running as processes: a webhook
receives a signed delivery; once deleted, it receives nothing more."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
from standardwebhooks.webhooks import Webhook as StandardWebhook

from devtools.processes import Stack
from tests.conftest import Receiver, auth

APP = "app_pipeline"


async def create_webhook(http: aiohttp.ClientSession, stack: Stack, **body: object) -> dict:
    async with http.post(f"{stack.ingest_url}/v1/apps/{APP}/webhooks", json=body,
                         headers=auth(APP)) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def publish(http: aiohttp.ClientSession, stack: Stack, **event: object) -> str:
    async with http.post(f"{stack.ingest_url}/v1/apps/{APP}/events", json=event,
                         headers=auth(APP)) as response:
        assert response.status == 202, await response.text()
        return (await response.json())["id"]


async def test_signed_delivery_and_nothing_after_delete(stack: Stack, receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as http:
        doomed = await create_webhook(http, stack, target=receiver.url("/doomed"))
        await create_webhook(
            http, stack, target=receiver.url("/witness"), triggers=["message.received"]
        )
        await asyncio.sleep(1.5)  # a new webhook is in force within a second
        assert doomed["triggers"] == ["message"]
        assert doomed["secret"].startswith("whsec_")

        first = await publish(http, stack, type="message.received", data={"text": "hello"})
        got = await receiver.wait_for("/doomed", first)
        payload = StandardWebhook(doomed["secret"]).verify(got.body, got.headers)
        assert payload["id"] == first
        assert payload["type"] == "message.received"
        assert payload["app_id"] == APP
        assert payload["data"] == {"text": "hello"}
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"].startswith("hookbus/")
        assert got.headers["x-hub-signature-256"].startswith("sha256=")

        async with http.delete(f"{stack.ingest_url}/v1/apps/{APP}/webhooks/{doomed['id']}",
                               headers=auth(APP)) as response:
            assert response.status == 204
        await asyncio.sleep(1.5)  # the contract gives a change one second to apply

        second = await publish(http, stack, type="message.received", data={"text": "again"})
        await receiver.wait_for("/witness", second)
        await asyncio.sleep(0.5)
        assert [r.headers["webhook-id"] for r in receiver.on("/doomed")] == [first]
        assert msgspec.json.decode(receiver.on("/witness")[0].body)["id"] == first


async def test_events_for_other_types_and_apps_are_not_delivered(
    stack: Stack, receiver: Receiver
) -> None:
    async with aiohttp.ClientSession() as http:
        await create_webhook(http, stack, target=receiver.url("/paid"),
                             triggers=["payment.succeeded"])
        await create_webhook(http, stack, target=receiver.url("/all"), triggers=["*"])
        await asyncio.sleep(1.5)  # a new webhook is in force within a second
        read = await publish(http, stack, type="conversation.read")
        paid = await publish(http, stack, type="payment.succeeded")
        await receiver.wait_for("/all", read)
        await receiver.wait_for("/all", paid)
        await receiver.wait_for("/paid", paid)
        assert [r.headers["webhook-id"] for r in receiver.on("/paid")] == [paid]


async def test_sigterm_stops_every_service_cleanly(stack: Stack) -> None:
    codes = stack.stop()
    logs = "\n".join(f"--- {s.name}\n{s.log()[-4000:]}" for s in stack.services.values())
    assert codes == {"eventlog": 0, "ingest": 0, "router": 0, "deliverer": 0}, logs
