"""Subscriptions end to end: every trigger name of every vocabulary routes
exactly the events it names, and changes apply within a second."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from schemas.event_types import EVENT_TYPES
from services.common.triggers import SUBSCRIBABLE_TYPES, expand
from devtools.processes import Stack
from tests.conftest import Receiver
from tests.integration.client import Client

CHANGE_DEADLINE = 1.0  # contract §6: a change is in force within a second

TRIGGER_SETS: list[list[str]] = (
    [[alias] for alias in sorted({a for t in EVENT_TYPES for a in t.aliases()})]
    + [[t] for t in sorted(SUBSCRIBABLE_TYPES)]
    + [[r] for r in sorted({t.split(".")[0] + ".*" for t in SUBSCRIBABLE_TYPES})]
    + [["*"], ["message:appUser", "CONTACT_CREATE"], ["delivery:success", "MESSAGE_DELIVERY"]]
)


@pytest.mark.stack_env(HOOKBUS_MAX_WEBHOOKS_PER_APP="500")
async def test_every_trigger_receives_exactly_its_events(stack: Stack, receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, "app_vocab")
        paths = {}
        for n, triggers in enumerate(TRIGGER_SETS):
            await client.create_webhook(target=receiver.url(f"/w{n}"), triggers=triggers)
            paths[f"/w{n}"] = triggers
        await asyncio.sleep(CHANGE_DEADLINE)
        published = {await client.publish(t): t for t in sorted(SUBSCRIBABLE_TYPES)}

        expected = {
            path: {e for e, t in published.items()
                   if any(t in (expand(trigger) or ()) for trigger in triggers)}
            for path, triggers in paths.items()
        }
        total = sum(len(ids) for ids in expected.values())
        async with asyncio.timeout(60):
            while len(receiver.received) < total:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # anything extra would arrive now

    got = Counter((r.path, r.headers["webhook-id"]) for r in receiver.received)
    assert [key for key, count in got.items() if count > 1] == [], "duplicates"
    for path, triggers in paths.items():
        assert {event for (p, event) in got if p == path} == expected[path], triggers


async def test_changes_apply_within_a_second(stack: Stack, receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, "app_changes")
        hook = await client.create_webhook(target=receiver.url("/before"))
        witness = await client.create_webhook(target=receiver.url("/witness"))
        await asyncio.sleep(CHANGE_DEADLINE)
        first = await client.publish("message.received")
        await receiver.wait_for("/before", first)

        await client.patch_webhook(hook["id"], target=receiver.url("/after"))
        await asyncio.sleep(CHANGE_DEADLINE)
        moved = await client.publish("message.received")
        await receiver.wait_for("/after", moved)

        rotated = await client.call("POST", f"/webhooks/{hook['id']}/secret/rotate", 200)
        await asyncio.sleep(CHANGE_DEADLINE)
        signed = await client.publish("message.received")
        got = await receiver.wait_for("/after", signed)
        StandardWebhook(rotated["secret"]).verify(got.body, got.headers)
        StandardWebhook(hook["secret"]).verify(got.body, got.headers)  # overlap

        await client.patch_webhook(hook["id"], enabled=False)
        await asyncio.sleep(CHANGE_DEADLINE)
        silent = await client.publish("message.received")
        await receiver.wait_for("/witness", silent)
        await asyncio.sleep(0.5)

        test = await client.call("POST", f"/webhooks/{witness['id']}/test", 202)
        await receiver.wait_for("/witness", test["id"])

    assert [r.headers["webhook-id"] for r in receiver.on("/before")] == [first]
    assert [r.headers["webhook-id"] for r in receiver.on("/after")] == [moved, signed]
    assert [r.headers["webhook-id"] for r in receiver.on("/witness")] == \
        [first, moved, signed, silent, test["id"]]
