"""`v1a` (ed25519) signatures end to end: the API's keys and errors on a real
broker, then deliveries from the three services as processes to a real local
receiver, verified with PyNaCl and the `whpk_` public key the API shows, through
a rotation and a change of scheme."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import Webhook

from devtools.processes import Stack
from tests.conftest import Received, Receiver, auth
from tests.integration.client import Client
from tests.integration.conftest import APP, Api, assert_error

HOOKS = f"/v1/apps/{APP}/webhooks"
# Svix's test key (svix-server e2e_endpoint.rs) and its public key.
SVIX_KEY = ("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9l"
            "MicMFs6Kvg==")
SVIX_PUBLIC_KEY = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="


async def create(api: Api, **body: object) -> dict:
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"} | body)
    assert status == 201 and created is not None, created
    return created


async def test_a_v1a_webhook_shows_its_public_key_never_its_private_key(api: Api) -> None:
    created = await create(api, signature_scheme="v1a")
    assert created["signature_scheme"] == "v1a" and "secret" not in created
    assert created["public_key"].startswith("whpk_")
    assert len(base64.b64decode(created["public_key"][5:], validate=True)) == 32
    assert created["public_keys"] == [created["public_key"]]
    _, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert fetched == created
    _, listed = await api.call("GET", HOOKS, headers=auth(APP))
    assert listed is not None and listed["webhooks"] == [created]

    given = await create(api, signature_scheme="v1a", secret=SVIX_KEY)
    assert given["public_key"] == SVIX_PUBLIC_KEY and "secret" not in given


async def test_a_secret_of_the_wrong_kind_is_a_400_and_writes_nothing(api: Api) -> None:
    before = await api.written()
    for body in [{"signature_scheme": "v1a", "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"},
                 {"signature_scheme": "v1a", "secret": "a passphrase"},
                 {"signature_scheme": "v1a", "secret": SVIX_KEY[:-8] + "AAAAAAA="},
                 {"signature_scheme": "v1a", "secret": SVIX_PUBLIC_KEY},
                 {"secret": SVIX_KEY},
                 {"signature_scheme": "v2"}]:
        status, error = await api.call("POST", HOOKS, headers=auth(APP),
                                       json={"target": "https://example.com/h"} | body)
        assert_error(status, error, 400)
        assert error is not None and SVIX_KEY[5:30] not in str(error)
    status, error = await api.call("POST", HOOKS, headers=auth(APP), json={
        "target": "https://example.com/h", "signature_scheme": "v1a", "secret": "whsec_abc"})
    assert error is not None and "whsk_" in error["error"]["message"]
    assert await api.written() == before


async def test_rotating_a_v1a_key_answers_the_new_public_key(api: Api) -> None:
    created = await create(api, signature_scheme="v1a")
    rotate = f"{HOOKS}/{created['id']}/secret/rotate"
    status, rotated = await api.call("POST", rotate, headers=auth(APP))
    assert status == 200 and rotated is not None and set(rotated) == {"public_key"}
    assert rotated["public_key"].startswith("whpk_")
    assert rotated["public_key"] != created["public_key"]
    _, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert fetched is not None and fetched["public_key"] == rotated["public_key"]
    assert fetched["public_keys"] == [rotated["public_key"], created["public_key"]]

    status, again = await api.call("POST", rotate, headers=auth(APP), json={"secret": SVIX_KEY})
    assert status == 200 and again == {"public_key": SVIX_PUBLIC_KEY}
    before = await api.written()
    for secret in ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", SVIX_PUBLIC_KEY, "whsk_AAAA"]:
        assert_error(*await api.call("POST", rotate, headers=auth(APP),
                                     json={"secret": secret}), 400, "secret")
    assert await api.written() == before


async def test_a_scheme_change_keeps_the_old_key_signing(api: Api) -> None:
    created = await create(api)
    status, patched = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                     json={"signature_scheme": "v1a"})
    assert status == 200 and patched is not None
    assert patched["signature_scheme"] == "v1a" and "secret" not in patched
    assert patched["public_keys"] == [patched["public_key"]]  # the old v1 secret has none
    status, back = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                  json={"signature_scheme": "v1", "description": "back"})
    assert status == 200 and back is not None
    assert back["secret"].startswith("whsec_") and back["secret"] != created["secret"]
    assert "public_key" not in back and back["public_keys"] == [patched["public_key"]]
    assert back["description"] == "back"
    status, same = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                  json={"signature_scheme": "v1"})
    assert status == 200 and same is not None and same["secret"] == back["secret"]


# --- Deliveries ----------------------------------------------------------------------


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, stack.ingest_url, "app_v1a")


def verified_by(public_key: str, got: Received) -> int:
    """How many `v1a` signatures of a delivery the `whpk_` key verifies (PyNaCl)."""
    verify_key = VerifyKey(base64.b64decode(public_key.removeprefix("whpk_"), validate=True))
    signed = (f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode()
              + got.body)
    count = 0
    for entry in got.headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1a":
            try:
                verify_key.verify(signed, base64.b64decode(signature, validate=True))
                count += 1
            except BadSignatureError:
                pass
    return count


def versions(got: Received) -> list[str]:
    return [e.split(",", 1)[0] for e in got.headers["webhook-signature"].split(" ")]


async def test_v1a_deliveries_verify_with_the_public_key_through_a_rotation(
    client: Client, receiver: Receiver
) -> None:
    hook = await client.create_webhook(target=receiver.url("/ed"), triggers=["*"],
                                       signature_scheme="v1a")
    await asyncio.sleep(1.2)  # in force within a second
    first = await receiver.wait_for("/ed", await client.publish("message.received", n=1))
    assert versions(first) == ["v1a"]
    assert "x-hub-signature-256" not in first.headers  # HMAC only
    assert verified_by(hook["public_key"], first) == 1

    rotated = await client.call("POST", f"/webhooks/{hook['id']}/secret/rotate", 200)
    await asyncio.sleep(1.2)
    second = await receiver.wait_for("/ed", await client.publish("message.received", n=2))
    assert versions(second) == ["v1a", "v1a"]  # the new key, then the old one
    assert verified_by(rotated["public_key"], second) == 1
    assert verified_by(hook["public_key"], second) == 1
    assert verified_by(rotated["public_key"], first) == 0
    fetched = await client.call("GET", f"/webhooks/{hook['id']}", 200)
    assert fetched["public_keys"] == [rotated["public_key"], hook["public_key"]]


async def test_a_change_from_v1_to_v1a_signs_with_both_through_the_overlap(
    client: Client, receiver: Receiver
) -> None:
    hook = await client.create_webhook(target=receiver.url("/move"), triggers=["*"])
    patched = await client.patch_webhook(hook["id"], signature_scheme="v1a")
    await asyncio.sleep(1.2)
    got = await receiver.wait_for("/move", await client.publish("message.received"))
    assert versions(got) == ["v1a", "v1"]
    assert verified_by(patched["public_key"], got) == 1
    Webhook(hook["secret"]).verify(got.body, got.headers)  # the old secret still verifies
    assert got.headers["x-hub-signature-256"].startswith("sha256=")
