"""Payload formats (contract §6 `payload_format`, §7) through the API and on the
real stack: one webhook per format gets one event, each body signed over the
bytes received; receivers written the way Chatwoot's and nativeMsg's docs
describe accept their format unchanged; a PATCH of the format applies to the
next delivery."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook as StandardWebhook

from devtools.processes import Stack
from schemas.payload_formats import PAYLOAD_FORMATS
from tests.conftest import Receiver, auth, until
from tests.integration.client import Client
from tests.integration.conftest import APP as API_APP
from tests.integration.conftest import Api, assert_error

APP = "app_formats"
# The attributes of a message as both platforms' docs show them: Chatwoot's
# message object, nativeMsg's `user` and `message`.
DATA = {
    "id": 1, "content": "Hi, I need help!", "message_type": "incoming",
    "conversation": {"display_id": 7}, "sender": {"id": 1, "name": "Ada"},
    "user": {"id": "67890", "phone": "+15555550123"},
    "message": {"type": "text", "content": "Hi, I need help!"},
}
# nativeMsg: "a unique secret key" per webhook; Hookbus uses a secret not of the
# `whsec_` form as its UTF-8 bytes, which is how a nativeMsg receiver keys its HMAC.
NATIVEMSG_SECRET = "nm-secret-key-0123456789"
FORMATS_MESSAGE = "must be one of standard, chatwoot, nativemsg, smooch, sinch"

Responder = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


# -- receivers written from the platforms' docs ------------------------------------
def chatwoot_receiver(accepted: list[dict]) -> Responder:
    """Chatwoot: `{"event": "message_created", // <...Message Attributes>}`: the
    event's name in `event`, the message's attributes at the top level."""
    async def handle(request: web.Request, _: int) -> web.Response:
        payload = await request.json()
        if payload.get("event") != "message_created":
            return web.Response(status=400, text="not a message_created event")
        try:
            accepted.append({"id": payload["id"], "content": payload["content"],
                             "message_type": payload["message_type"],
                             "conversation": payload["conversation"]["display_id"],
                             "account": payload["account"]["id"]})
        except (KeyError, TypeError):
            return web.Response(status=400, text="not a Chatwoot message")
        return web.json_response({"ok": True})
    return handle


def nativemsg_receiver(accepted: list[dict], secret: str) -> Responder:
    """nativeMsg: the signature header (`sha256=<hex>` with the webhook's secret
    key) verified, then `event`, `timestamp`, `user` and `message`."""
    async def handle(request: web.Request, _: int) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-hub-signature-256", ""), expected):
            return web.Response(status=401, text="bad signature")
        payload = json.loads(body)
        if payload.get("event") != "message.received":
            return web.Response(status=400, text="not a message.received event")
        try:
            accepted.append({"at": datetime.fromisoformat(payload["timestamp"]),
                             "bot_id": payload["bot_id"], "user": payload["user"]["id"],
                             "content": payload["message"]["content"]})
        except (KeyError, TypeError, ValueError):
            return web.Response(status=400, text="not a nativeMsg message")
        return web.json_response({"ok": True})
    return handle


def verified(hook: dict, headers: dict[str, str], body: bytes) -> dict:
    """The body as JSON, once its Standard Webhooks and GitHub signatures are
    checked over the bytes received."""
    secret = hook["secret"]
    # A `whsec_` secret's key is its base64 part; any other secret is its UTF-8 bytes.
    raw = (base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_")
           else secret.encode())
    payload = StandardWebhook(raw).verify(body, headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-hub-signature-256"] == \
        "sha256=" + hmac.new(raw, body, hashlib.sha256).hexdigest()
    assert lowered["content-type"] == "application/json"
    return payload


async def test_a_delivery_in_each_format_is_signed_and_docs_written_receivers_accept_it(
    stack: Stack, receiver: Receiver
) -> None:
    chatwoot: list[dict] = []
    nativemsg: list[dict] = []
    receiver.respond("/chatwoot", chatwoot_receiver(chatwoot))
    receiver.respond("/nativemsg", nativemsg_receiver(nativemsg, NATIVEMSG_SECRET))
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack.ingest_url, APP)
        hooks = {}
        for payload_format in PAYLOAD_FORMATS:
            body: dict = {"target": receiver.url(f"/{payload_format}"),
                          "triggers": ["message.received"], "payload_format": payload_format}
            if payload_format == "nativemsg":
                body["secret"] = NATIVEMSG_SECRET
            hooks[payload_format] = await client.create_webhook(**body)
            assert hooks[payload_format]["payload_format"] == payload_format
        await asyncio.sleep(1.2)  # in force within a second
        event = await client.publish("message.received", **DATA)
        got = {f: await receiver.wait_for(f"/{f}", event) for f in PAYLOAD_FORMATS}
        bodies = {f: verified(hooks[f], r.headers, r.body) for f, r in got.items()}

        standard = bodies["standard"]
        assert (standard["id"], standard["type"], standard["app_id"], standard["data"]) == \
            (event, "message.received", APP, DATA)
        created = datetime.fromisoformat(standard["created_at"]).astimezone(UTC)

        body = bodies["chatwoot"]
        assert body["event"] == "message_created"
        assert {k: body[k] for k in DATA} == DATA
        assert body["created_at"] == created.strftime("%Y-%m-%d %H:%M:%S UTC")
        assert body["account"] == {"id": APP}

        body = bodies["nativemsg"]
        assert (body["event"], body["bot_id"]) == ("message.received", APP)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["timestamp"])
        assert datetime.fromisoformat(body["timestamp"]) == created.replace(microsecond=0)
        assert {k: body[k] for k in DATA} == DATA

        body = bodies["smooch"]
        assert (body["trigger"], body["app"], body["version"]) == \
            ("message:appUser", {"_id": APP}, "v1.1")
        assert abs(body["timestamp"] - created.timestamp()) < 0.001
        assert {k: body[k] for k in DATA} == DATA

        body = bodies["sinch"]
        assert (body["trigger"], body["app_id"], body["message"]) == \
            ("MESSAGE_INBOUND", APP, DATA)
        assert datetime.fromisoformat(body["event_time"]) == \
            created.replace(microsecond=created.microsecond // 1000 * 1000)
        assert body["accepted_time"] == body["event_time"]

        # The docs-written receivers took them as they came (answered 2xx).
        await until(lambda: _true(chatwoot and nativemsg), timeout=10)
        assert chatwoot[0] == {"id": 1, "content": "Hi, I need help!",
                               "message_type": "incoming", "conversation": 7, "account": APP}
        assert (nativemsg[0]["bot_id"], nativemsg[0]["user"], nativemsg[0]["content"]) == \
            (APP, "67890", "Hi, I need help!")
        assert nativemsg[0]["at"] == created.replace(microsecond=0)

        # A change of format applies to the next delivery, signed the same way.
        patched = await client.patch_webhook(hooks["standard"]["id"], payload_format="smooch")
        assert patched["payload_format"] == "smooch"
        await asyncio.sleep(1.2)
        later = await client.publish("message.received", **DATA)
        received = await receiver.wait_for("/standard", later)
        body = verified(hooks["standard"], received.headers, received.body)
        assert (body["trigger"], body["app"]) == ("message:appUser", {"_id": APP})
        assert received.headers["webhook-id"] == later


async def _true(value: object) -> bool:
    return bool(value)


# -- the API ------------------------------------------------------------------------
async def test_the_api_takes_shows_and_changes_the_format(api: Api) -> None:
    base, headers = f"/v1/apps/{API_APP}/webhooks", auth(API_APP)
    status, plain = await api.call("POST", base, json={"target": "https://example.com/a"},
                                   headers=headers)
    assert status == 201 and plain is not None and plain["payload_format"] == "standard"
    status, hook = await api.call("POST", base, headers=headers, json={
        "target": "https://example.com/b", "payload_format": "chatwoot"})
    assert status == 201 and hook is not None and hook["payload_format"] == "chatwoot"
    await until(lambda: _shown(api, f"{base}/{hook['id']}", headers, "chatwoot"))
    status, listed = await api.call("GET", base, headers=headers)
    assert status == 200 and listed is not None
    assert {w["id"]: w["payload_format"] for w in listed["webhooks"]} == \
        {plain["id"]: "standard", hook["id"]: "chatwoot"}

    status, changed = await api.call("PATCH", f"{base}/{hook['id']}", headers=headers,
                                     json={"payload_format": "sinch"})
    assert status == 200 and changed is not None and changed["payload_format"] == "sinch"
    status, other = await api.call("PATCH", f"{base}/{hook['id']}", headers=headers,
                                    json={"description": "crm"})
    assert status == 200 and other is not None and other["payload_format"] == "sinch"

    written = await api.written()
    for method, path, body in [
        ("PATCH", f"{base}/{hook['id']}", {"payload_format": "xml"}),
        ("PATCH", f"{base}/{hook['id']}", {"payload_format": None}),
        ("POST", base, {"target": "https://example.com/c", "payload_format": "Chatwoot"}),
    ]:
        status, error = await api.call(method, path, headers=headers, json=body)
        assert_error(status, error, 400, "payload_format")
        assert error is not None
        if isinstance(body["payload_format"], str):
            assert error == {"error": {
                "code": 400, "status": "INVALID_ARGUMENT",
                "message": f"payload_format: {FORMATS_MESSAGE}",
                "details": [{"field": "payload_format", "reason": FORMATS_MESSAGE}]}}
    assert await api.written() == written  # nothing written
    status, still = await api.call("GET", f"{base}/{hook['id']}", headers=headers)
    assert status == 200 and still is not None and still["payload_format"] == "sinch"


async def _shown(api: Api, path: str, headers: dict[str, str], payload_format: str) -> bool:
    status, body = await api.call("GET", path, headers=headers)
    return status == 200 and body is not None and body["payload_format"] == payload_format
