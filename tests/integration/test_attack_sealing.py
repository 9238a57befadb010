"""A hostile review of secrets sealed at rest (commits ed636cd, 9c65d9f), on the
real broker: a producer that may write the `webhooks` topic, a tenant using the
API, key configuration mistakes and `make reseal` racing other writers. Each
failed against the code as it was reviewed. Not here: a superseded record in a
partition that gets no later write outlives max.compaction.lag.ms (Kafka rolls
a segment only on an append); the README says so."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from devtools.broker import ROOT, Broker
from devtools.processes import Stack
from schemas.webhooks import Webhook, webhook_decoder
from services.common.sealing import SecretKeys, key_ids, new_key_entry, seal_webhook
from services.common.topics import Topics
from tests.conftest import (
    SECRET_KEYS,
    SECRET_KEYS_TEXT,
    Received,
    Receiver,
    auth,
    records,
    until,
)
from tests.integration.client import Client
from tests.integration.conftest import current_record, Api

NOW = datetime.now(UTC)
CLIENT_SECRET = "victims-oauth-client-secret-0123456789"
T1_FIRST = SecretKeys.parse(",".join(reversed(SECRET_KEYS_TEXT.split(","))))  # t1 seals


def legacy(webhook_id: str, app_id: str, target: str, secret: str) -> Webhook:
    return Webhook(id=webhook_id, app_id=app_id, target=target, triggers=["message.received"],
                   secret=secret, created_at=NOW, updated_at=NOW)


async def rewrite_then_publish(kafka: Broker, topics: Topics, producer: AIOKafkaProducer,
                               client: Client, receiver: Receiver, webhook_id: str,
                               changes: dict, path: str) -> Received | None:
    """As a writer of the webhooks topic: the webhook's record with `changes` as
    its next version; then an event of its app, and what `path` got of it."""
    record, partition = await current_record(kafka.bootstrap, topics.webhooks, webhook_id)
    record |= changes
    record["version"] += 1
    await producer.send_and_wait(topics.webhooks, msgspec.json.encode(record),
                                 key=webhook_id.encode(), partition=partition)
    await asyncio.sleep(1.5)  # in force within a second (contract §6)
    event = await client.publish("message.received")
    try:
        return await receiver.wait_for(path, event, timeout=8)
    except TimeoutError:
        return None


async def token_endpoint(request: web.Request, n: int) -> web.Response:
    return web.json_response({"access_token": "tok", "token_type": "Bearer", "expires_in": 60})


# -- a producer that may write the webhooks topic ----------------------------------

async def test_a_webhooks_writer_cannot_send_a_sealed_client_secret_to_its_own_token_endpoint(
    http: aiohttp.ClientSession, stack: Stack, kafka: Broker, topics: Topics,
    receiver: Receiver, producer: AIOKafkaProducer,
) -> None:
    """The associated data binds a sealed client secret to (webhook id, field)
    only. A producer that can write `webhooks` (PLAINTEXT Kafka, or any stolen
    writer credential) copies the victim's record, keeps the sealed
    `client_secret` as it is and points `client_credentials.endpoint` at a
    server it runs: the deliverer opens the secret and posts it there in the
    clear (Basic auth). Sealing was meant to keep exactly this secret from
    someone holding the topic but no key."""
    receiver.respond("/token", token_endpoint)
    receiver.respond("/evil-token", token_endpoint)
    client = Client(http, stack.ingest_url, "app_victim")
    hook = await client.create_webhook(
        target=receiver.url("/hook"), triggers=["message.received"],
        client_credentials={"client_id": "victim", "client_secret": CLIENT_SECRET,
                            "endpoint": receiver.url("/token")})
    record, partition = await current_record(kafka.bootstrap, topics.webhooks, hook["id"])
    assert CLIENT_SECRET.encode() not in msgspec.json.encode(record)  # sealed, as promised

    # The hostile copy: only the token endpoint (plain JSON) and the version change.
    record["client_credentials"]["endpoint"] = receiver.url("/evil-token")
    record["version"] += 1
    await producer.send_and_wait(topics.webhooks, msgspec.json.encode(record),
                                 key=hook["id"].encode(), partition=partition)
    await asyncio.sleep(1.5)  # in force within a second (contract §6)

    event = await client.publish("message.received")

    async def attempted() -> bool:
        return any(v and event.encode() in v
                   for _, v in await records(kafka.bootstrap, topics.attempts))

    await until(attempted, timeout=30)
    stolen = [r for r in receiver.on("/evil-token")
              if CLIENT_SECRET in base64.b64decode(
                  r.headers.get("Authorization", "Basic ").removeprefix("Basic ")
              ).decode(errors="replace") or CLIENT_SECRET.encode() in r.body]
    assert stolen == [], (
        "the victim's sealed client secret was opened and posted to the hostile token "
        f"endpoint: {stolen[0].headers.get('Authorization')}")


async def test_a_webhooks_writer_cannot_have_the_victims_oauth_token_presented_to_its_target(
    http: aiohttp.ClientSession, stack: Stack, kafka: Broker, topics: Topics,
    receiver: Receiver, producer: AIOKafkaProducer,
) -> None:
    """The same copy, with the token endpoint left alone and `target` pointed at
    the writer's server: the deliverer opens the victim's client secret, gets a
    token for it from the victim's own token endpoint and presents it
    (`Authorization: Bearer`) to the writer. Nothing binds the sealed secret to
    where what it yields is sent."""
    async def victims_token_endpoint(request: web.Request, n: int) -> web.Response:
        basic = request.headers.get("Authorization", "").removeprefix("Basic ")
        if base64.b64decode(basic).decode().partition(":")[2] != CLIENT_SECRET:
            return web.Response(status=401)
        return web.json_response({"access_token": "victims-access-token", "expires_in": 60})

    receiver.respond("/token", victims_token_endpoint)
    client = Client(http, stack.ingest_url, "app_victim2")
    hook = await client.create_webhook(
        target=receiver.url("/hook"), triggers=["message.received"],
        client_credentials={"client_id": "victim", "client_secret": CLIENT_SECRET,
                            "endpoint": receiver.url("/token")})
    got = await rewrite_then_publish(kafka, topics, producer, client, receiver, hook["id"],
                                     {"target": receiver.url("/evil-hook")}, "/evil-hook")
    assert got is None or "victims-access-token" not in got.headers.get("Authorization", ""), \
        f"the victim's OAuth token went to the writer's target: {got.headers['Authorization']}"


# -- key configuration mistakes ------------------------------------------------------

@pytest.mark.stack_env(HOOKBUS_DISABLE_AFTER="1s", HOOKBUS_RETRY_SCHEDULE="1s,1s,1s,1s,1s,1s")
async def test_a_key_the_deliverer_lacks_does_not_get_the_customers_webhook_disabled(
    http: aiohttp.ClientSession, stack: Stack, kafka: Broker, topics: Topics,
    receiver: Receiver, producer: AIOKafkaProducer,
) -> None:
    """A webhook sealed under a key the deliverer does not hold (ingest with
    `k2,k1` while the deliverer still has `k1` alone; a key dropped too early).
    README: 'retried on the usual schedule … Putting the key back heals them'.
    But the 'cannot sign' failure counts as the endpoint's failure: after
    HOOKBUS_DISABLE_AFTER (5 days by default) the deliverer disables the
    customer's webhook, blaming it ('every attempt failed'), and putting the key
    back does not re-enable it. The operator's mistake should not be recorded
    against the customer (nor dead-letter its events, which the key's return does
    not heal either)."""
    elsewhere = SecretKeys.parse(new_key_entry("elsewhere"))
    hook = legacy("wh_keyless", "app_keyless", receiver.url("/keyless"), "whsec_a2V5bGVzcy1rZXk=")
    await producer.send_and_wait(topics.webhooks, msgspec.json.encode(seal_webhook(elsewhere, hook)),
                                 key=hook.id.encode())
    await asyncio.sleep(1.5)
    client = Client(http, stack.ingest_url, hook.app_id)

    async def disabled() -> bool:
        record, _ = await current_record(kafka.bootstrap, topics.webhooks, hook.id)
        return record.get("enabled", True) is False

    deadline = asyncio.get_running_loop().time() + 15  # 15 s of 'cannot sign'
    while asyncio.get_running_loop().time() < deadline and not await disabled():
        await client.publish("message.received")
        await asyncio.sleep(1)
    record, _ = await current_record(kafka.bootstrap, topics.webhooks, hook.id)
    assert record.get("enabled", True), (
        f"the deliverer disabled the customer's webhook: {record.get('disabled_reason')!r}")
    assert receiver.on("/keyless") == []


# -- a tenant using the API ----------------------------------------------------------

async def unopenable_webhook(api: Api, producer: AIOKafkaProducer, webhook_id: str) -> Webhook:
    """A webhook of app_1 sealed under a key the API does not hold, once the API
    has read it."""
    hook = legacy(webhook_id, "app_1", "https://example.com/h", "whsec_dW5vcGVuYWJsZS1rZXk=")
    sealed = seal_webhook(SecretKeys.parse(new_key_entry("elsewhere")), hook)
    await producer.send_and_wait(api.topics.webhooks, msgspec.json.encode(sealed),
                                 key=hook.id.encode())

    async def known() -> bool:
        status, _ = await api.call("GET", f"/v1/apps/app_1/webhooks/{hook.id}",
                                   headers=auth("app_1"))
        return status == 200

    await until(known)
    return sealed


async def test_reading_a_webhook_whose_secret_cannot_be_opened_does_not_answer_the_sealed_value(
    api: Api, producer: AIOKafkaProducer,
) -> None:
    """GET /webhooks/{id} of a webhook whose secret ingest cannot open answers
    the stored `sealed:v1:<key id>:<ciphertext>` as the webhook's `secret`. The
    customer is handed a value that is not its secret (a receiver configured with
    it rejects every delivery once the key is back), the key id and ciphertext
    leave the platform, and nothing says the secret is unavailable."""
    await unopenable_webhook(api, producer, "wh_unopened_get")
    status, body = await api.call("GET", "/v1/apps/app_1/webhooks/wh_unopened_get",
                                  headers=auth("app_1"))
    assert status == 200 and body is not None
    assert not str(body.get("secret")).startswith("sealed:"), body["secret"]


async def test_a_customer_secret_that_looks_sealed_is_never_stored_in_plain_text(
    api: Api,
) -> None:
    """A v1 secret may be any string: one that starts `sealed:` is sealed like
    any other, never written as it is (an earlier version kept values that
    looked sealed verbatim)."""
    status, hook = await api.call("POST", "/v1/apps/app_1/webhooks", headers=auth("app_1"),
                                  json={"target": "https://example.com/h"})
    assert status == 201 and hook is not None
    chosen = "sealed:v1:t2:" + base64.b64encode(b"the customer's own secret material!").decode()
    status, body = await api.call(
        "POST", f"/v1/apps/app_1/webhooks/{hook['id']}/secret/rotate",
        headers=auth("app_1"), json={"secret": chosen})
    assert status == 200, body
    written = [v for k, v in await records(api.bootstrap, api.topics.webhooks)
               if k == hook["id"].encode() and v]
    assert written and all(chosen.encode() not in v for v in written), \
        "the customer's secret is in the webhooks topic in plain text"
    status, read = await api.call("GET", f"/v1/apps/app_1/webhooks/{hook['id']}",
                                  headers=auth("app_1"))
    assert status == 200 and read is not None and read["secret"] == chosen


async def test_a_webhook_whose_secrets_cannot_be_opened_cannot_be_changed_but_can_be_deleted(
    api: Api, producer: AIOKafkaProducer,
) -> None:
    """Rewriting a record this service cannot open would lose its secrets (or
    keep sealed values bound to what the write changes): every change is a 409
    saying why, nothing is written; the customer may delete it (and create a
    new one), or the operator restores the key."""
    sealed = await unopenable_webhook(api, producer, "wh_unopened_edit")
    before = len(await records(api.bootstrap, api.topics.webhooks))
    path = f"/v1/apps/app_1/webhooks/{sealed.id}"
    for method, suffix, body in (("POST", "/secret/rotate", None),
                                 ("PATCH", "", {"description": "x"}),
                                 ("PATCH", "", {"target": "https://example.com/other"})):
        status, answer = await api.call(method, path + suffix, headers=auth("app_1"), json=body)
        assert status == 409 and answer is not None, answer
        assert "secrets cannot be opened" in answer["error"]["message"]
    assert len(await records(api.bootstrap, api.topics.webhooks)) == before
    status, _ = await api.call("DELETE", path, headers=auth("app_1"))
    assert status in (200, 204)
    status, _ = await api.call("GET", path, headers=auth("app_1"))
    assert status == 404


# -- make reseal ---------------------------------------------------------------------

async def test_reseal_does_not_say_done_while_a_webhook_is_sealed_under_another_key(
    kafka: Broker, topics: Topics, producer: AIOKafkaProducer, tmp_path: Path,
) -> None:
    """`make reseal` plans from the records it read at start, works through the
    plan and then says "done: every webhook is sealed under 't2'" (exit 0),
    which the README says is the signal to drop the old key. A record another
    writer seals under the old key meanwhile (a replica not yet redeployed with
    the new key first, or whose keys are in the old order: a deliverer
    auto-disabling, an ingest edit) is not looked at again. The operator drops
    t1, and that webhook can no longer be signed."""
    hooks = [legacy(f"wh_rs{n}", f"app_rs{n}", "https://example.com/h",
                    "whsec_" + base64.b64encode(f"reseal-secret-{n}".encode()).decode())
             for n in range(7)]
    for hook in hooks[:6]:  # in plain text: to re-seal
        await producer.send_and_wait(topics.webhooks, msgspec.json.encode(hook),
                                     key=hook.id.encode())
    done = msgspec.structs.replace(hooks[6], version=1)  # under t2 already
    await producer.send_and_wait(topics.webhooks,
                                 msgspec.json.encode(seal_webhook(SECRET_KEYS, done)),
                                 key=done.id.encode())

    env = {**os.environ, "HOOKBUS_KAFKA_BOOTSTRAP": kafka.bootstrap,
           "HOOKBUS_TOPIC_PREFIX": topics.prefix, "HOOKBUS_SECRET_KEYS": SECRET_KEYS_TEXT}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.reseal", "--rate", "2", cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        async for raw in process.stderr:
            lines.append(raw.decode())
            if "to re-seal under" in lines[-1]:
                # Meanwhile a writer whose first key is still t1 writes the done one.
                _, partition = await current_record(kafka.bootstrap, topics.webhooks, done.id)
                edited = msgspec.structs.replace(done, description="edited", version=2)
                await producer.send_and_wait(
                    topics.webhooks, msgspec.json.encode(seal_webhook(T1_FIRST, edited)),
                    key=done.id.encode(), partition=partition)
        code = await process.wait()
    output = "".join(lines)
    final, _ = await current_record(kafka.bootstrap, topics.webhooks, done.id)
    sealed_under = key_ids(webhook_decoder.decode(msgspec.json.encode(final)))
    if code == 0:  # it may say done only when it is: it looked again, and re-sealed that one
        assert "done: every webhook is sealed under 't2'" in output
        assert sealed_under == frozenset({"t2"}), (
            f"reseal said done (exit {code}) while {done.id} is sealed under {sealed_under}")
        assert "written meanwhile under an older key" in output
    else:
        assert done.id in output and "still sealed under an older key" in output


# -- a producer that may write the webhooks topic, again -----------------------------

@pytest.mark.stack_env(HOOKBUS_PLAINTEXT_SECRETS="refuse")
async def test_once_resealed_a_plain_text_secret_written_to_the_topic_is_not_signed_with(
    http: aiohttp.ClientSession, stack: Stack, kafka: Broker, topics: Topics,
    receiver: Receiver, producer: AIOKafkaProducer,
) -> None:
    """Plain-text secrets are accepted for ever ('records from before still
    load'); nothing lets an operator refuse them once `make reseal` is done. So
    a webhooks writer downgrades a sealed webhook to a plain-text secret of its
    choosing and the deliverer signs the customer's events with it, silently (no
    log line). PROPOSED setting, not in the code: HOOKBUS_PLAINTEXT_SECRETS=refuse
    (after a reseal) treats a plain-text secret as one that cannot be opened."""
    client = Client(http, stack.ingest_url, "app_downgrade")
    hook = await client.create_webhook(target=receiver.url("/down"),
                                       triggers=["message.received"])
    got = await rewrite_then_publish(
        kafka, topics, producer, client, receiver, hook["id"],
        {"secret": "whsec_" + base64.b64encode(b"attacker-chosen-secret").decode()}, "/down")
    assert got is None, ("signed with the plain-text secret the writer chose: "
                         + got.headers["webhook-signature"])


async def test_reseal_keeps_the_fields_of_a_newer_record_it_does_not_know(
    kafka: Broker, topics: Topics, producer: AIOKafkaProducer,
) -> None:
    """schemas/webhooks.py: 'unknown fields are skipped when decoding, so older
    services read newer records'. `make reseal` decodes each record into this
    version's Webhook and writes it back whole, so whatever field a newer
    version added (as `signature_scheme` was added lately: a v1a webhook resealed
    by a reseal one version older would come back as v1) is dropped from every
    webhook of the topic at once. Run from an operator's older checkout or image,
    a reseal is a silent schema downgrade of the whole topic."""
    hook = legacy("wh_future", "app_future", "https://example.com/h",
                  "whsec_" + base64.b64encode(b"future-secret").decode())
    newer = msgspec.json.decode(msgspec.json.encode(hook)) | {"added_later": "keep me"}
    await producer.send_and_wait(topics.webhooks, msgspec.json.encode(newer),
                                 key=hook.id.encode())
    env = {**os.environ, "HOOKBUS_KAFKA_BOOTSTRAP": kafka.bootstrap,
           "HOOKBUS_TOPIC_PREFIX": topics.prefix, "HOOKBUS_SECRET_KEYS": SECRET_KEYS_TEXT}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.reseal", cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    # Left alone, and named: rewriting it from this version's schema would drop a field.
    assert process.returncode == 1, err.decode()
    assert "wh_future: not re-sealed: it has fields this version does not know (added_later)" \
        in err.decode()
    final, _ = await current_record(kafka.bootstrap, topics.webhooks, hook.id)
    assert final.get("added_later") == "keep me", f"dropped by the reseal: {sorted(final)}"


async def test_a_credential_in_a_custom_header_is_not_stored_in_plain_text(
    api: Api,
) -> None:
    """§9: 'a stolen Kafka disk, backup or consumer must not yield a secret'.
    Custom headers are where customers put static credentials for their
    receivers (`Authorization: Token …`, `X-Api-Key`; the project's own
    test_webhook_rules does exactly that), and they are written to the topic in
    plain text, read by the router (which holds no key) and kept in every
    backup. They are sent only by the deliverer, which holds the keys."""
    credential = "Token receiver-api-credential-0123456789"
    status, hook = await api.call("POST", "/v1/apps/app_1/webhooks", headers=auth("app_1"),
                                  json={"target": "https://example.com/h",
                                        "headers": {"Authorization": credential,
                                                    "X-Api-Key": "key-0123456789abcdef"}})
    assert status == 201 and hook is not None
    written = [v for k, v in await records(api.bootstrap, api.topics.webhooks)
               if k == hook["id"].encode() and v]
    assert written
    for value in written:
        assert credential.encode() not in value and b"key-0123456789abcdef" not in value, \
            "a receiver credential is in the webhooks topic in plain text"
