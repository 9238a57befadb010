"""Secrets sealed at rest (issue 10, item 1), on the real broker: no webhook
record holds a secret in plain text; records written before sealing, or under
an older key, still load and deliver; `python -m services.reseal` re-seals them
while the services run, can be interrupted and run again; a record whose secret
cannot be opened is never signed with anything else."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from devtools.broker import ROOT, Broker
from devtools.processes import Stack
from schemas.webhooks import ClientCredentials, Webhook, webhook_decoder
from services.common.sealing import SecretKeys, key_ids, new_key_entry, seal_webhook
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from tests.conftest import (
    SECRET_KEYS_TEXT,
    Receiver,
    auth,
    make_stack,
    records,
    until,
)
from tests.integration.client import Client
from tests.integration.conftest import Api

T1_ONLY = SecretKeys.parse(SECRET_KEYS_TEXT.split(",")[1])  # the older of the tests' keys
T2_ONLY_TEXT = SECRET_KEYS_TEXT.split(",")[0]
NOW = datetime.now(UTC)


def last_values(pairs: list[tuple[bytes | None, bytes | None]]) -> dict[str, bytes | None]:
    """What compaction keeps: the last value of each key."""
    return {key.decode(): value for key, value in pairs if key is not None}


def legacy(webhook_id: str, app_id: str, target: str, secret: str) -> Webhook:
    return Webhook(id=webhook_id, app_id=app_id, target=target, triggers=["message.received"],
                   secret=secret, created_at=NOW, updated_at=NOW)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return f"v1,{expected}" in headers["webhook-signature"].split(" ")


async def test_no_record_holds_a_secret_in_plain_text(api: Api) -> None:
    secret, client_secret = "whsec_c2VhbGVkLXNlY3JldC1ieXRlcy0xMjM0NTY=", "client-secret-123456"
    status, hook = await api.call("POST", "/v1/apps/app_1/webhooks", headers=auth("app_1"), json={
        "target": "https://example.com/h", "secret": secret,
        "client_credentials": {"client_id": "c", "client_secret": client_secret,
                               "endpoint": "https://example.com/token"}})
    assert status == 201 and hook is not None and hook["secret"] == secret
    status, rotated = await api.call(
        "POST", f"/v1/apps/app_1/webhooks/{hook['id']}/secret/rotate", headers=auth("app_1"))
    assert status == 200 and rotated is not None

    written = [v for k, v in await records(api.bootstrap, api.topics.webhooks)
               if k == hook["id"].encode()]
    assert len(written) == 2
    for value in written:
        assert value is not None
        for plain in (secret, secret.removeprefix("whsec_"), client_secret,
                      rotated["secret"].removeprefix("whsec_")):
            assert plain.encode() not in value
        record = webhook_decoder.decode(value)
        assert key_ids(record) == frozenset({"t2"})  # the first key of HOOKBUS_SECRET_KEYS
    # ... and they open again, as every reader of the topic sees them.
    status, read = await api.call("GET", f"/v1/apps/app_1/webhooks/{hook['id']}",
                                  headers=auth("app_1"))
    assert status == 200 and read is not None and read["secret"] == rotated["secret"]


@pytest.fixture
async def producer_of_old_records(kafka: Broker) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


async def run_reseal(stack: Stack, *args: str, interrupt_after: str | None = None
                     ) -> tuple[int, str]:
    """Run the re-seal as an operator would; with `interrupt_after`, send it
    SIGINT once a line containing that text appears."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.reseal", *args, cwd=ROOT, env=stack.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    lines = []
    async with asyncio.timeout(120):
        async for raw in process.stderr:
            line = raw.decode()
            lines.append(line)
            if interrupt_after and interrupt_after in line:
                process.send_signal(signal.SIGINT)
                interrupt_after = None
        code = await process.wait()
    return code, "".join(lines)


async def test_old_records_load_and_a_reseal_online_seals_them_under_the_new_key(
    kafka: Broker, topics: Topics, tmp_path: Path, receiver: Receiver,
    producer_of_old_records: AIOKafkaProducer,
) -> None:
    receiver.respond("/token", _token)
    # Written before this change (plain text) and under the older key alone: 40 webhooks.
    target = receiver.url("/sealed")
    hooks = []
    for n in range(40):
        plain = legacy(f"wh_old{n:02d}", f"app_old{n:02d}", target,
                       "whsec_" + base64.b64encode(f"legacy-secret-{n:02d}-bytes".encode()).decode())
        if n % 2:  # odd ones sealed under t1 (with an OAuth secret too), even ones in plain text
            plain = msgspec.structs.replace(plain, client_credentials=ClientCredentials(
                client_id="c", client_secret=f"old-client-secret-{n}",
                endpoint=receiver.url("/token")))
        hooks.append(plain)
        written = seal_webhook(T1_ONLY, plain) if n % 2 else plain
        await producer_of_old_records.send_and_wait(
            topics.webhooks, msgspec.json.encode(written), key=plain.id.encode())

    # The services run with t2 first (sealing) and t1 (opening).
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    for name in ("ingest", "router", "deliverer"):
        stack.start(name)
    try:
        await stack.wait_ready()
        async with aiohttp.ClientSession() as http:
            plain_one, sealed_one = hooks[0], hooks[1]
            for hook in (plain_one, sealed_one):
                event = await Client(http, stack.ingest_url, hook.app_id).publish(
                    "message.received")
                got = await receiver.wait_for("/sealed", event)
                assert verify(hook.secret, got.headers, got.body)  # signed with its own secret

            # An operator re-seals while they run, slowly, and stops it half-way...
            code, output = await run_reseal(stack, "--rate", "5", interrupt_after="/40 done")
            assert code == 130, output
            assert "40 to re-seal under 't2'" in output and "interrupted" in output
            halfway = last_values(await records(kafka.bootstrap, topics.webhooks))
            done = [i for i, v in halfway.items()
                    if v and key_ids(webhook_decoder.decode(v)) == frozenset({"t2"})]
            assert 0 < len(done) < 40

            # ... meanwhile a customer edits one not yet done (the API seals it under t2) ...
            pending = next(h for h in hooks if h.id not in done)
            await Client(http, stack.ingest_url, pending.app_id).patch_webhook(
                pending.id, description="edited during the re-seal")

            # ... then runs it again to the end.
            code, output = await run_reseal(stack, "--rate", "1000")
            assert code == 0, output
            assert "done: every webhook is sealed under 't2'" in output

        final = last_values(await records(kafka.bootstrap, topics.webhooks))
        assert len(final) == 40
        for hook in hooks:
            value = final[hook.id]
            assert value is not None
            record = webhook_decoder.decode(value)
            assert key_ids(record) == frozenset({"t2"})
            assert hook.secret.encode() not in value and b"old-client-secret" not in value
            assert record.version >= 1
        assert webhook_decoder.decode(final[pending.id]).description == "edited during the re-seal"

        # The old key can go: a reader with t2 alone opens every webhook, whole.
        view = WebhooksView(kafka.bootstrap, topics.webhooks, keys=SecretKeys.parse(T2_ONLY_TEXT))
        await view.start()
        try:
            await view.ready.wait()
            for hook in hooks:
                current = view.get(hook.id)
                assert current is not None and view.secret_problem(hook.id) is None
                assert current.secret == hook.secret
                assert current.client_credentials == hook.client_credentials
        finally:
            await view.stop()

        # A deliverer restarted with t2 alone still signs with each webhook's own secret.
        stack.env["HOOKBUS_SECRET_KEYS"] = T2_ONLY_TEXT
        stack.kill("deliverer")
        stack.start("deliverer")
        await stack.wait_ready()
        async with aiohttp.ClientSession() as http:
            hook = hooks[2]
            event = await Client(http, stack.ingest_url, hook.app_id).publish("message.received")
            got = await receiver.wait_for("/sealed", event)
            assert verify(hook.secret, got.headers, got.body)
        assert "cannot be opened" not in stack.services["deliverer"].log()
    finally:
        stack.stop()


async def _token(request: aiohttp.web.Request, n: int) -> aiohttp.web.Response:
    """An OAuth token endpoint that checks the client secret it is sent (Basic)."""
    basic = request.headers.get("Authorization", "").removeprefix("Basic ")
    _, _, client_secret = base64.b64decode(basic).decode().partition(":")
    if not client_secret.startswith("old-client-secret-"):
        return aiohttp.web.Response(status=401)
    return aiohttp.web.json_response({"access_token": "t", "token_type": "Bearer",
                                      "expires_in": 60})


@pytest.mark.stack_env(HOOKBUS_RETRY_SCHEDULE="1s")
async def test_a_secret_that_cannot_be_opened_is_never_sent_and_the_attempt_says_why(
    stack: Stack, kafka: Broker, topics: Topics, receiver: Receiver,
    producer_of_old_records: AIOKafkaProducer,
) -> None:
    """A record sealed under a key the services do not hold (dropped too early,
    or written by a producer with its own key): nothing is sent; the task is
    deferred (no attempt used, no failure streak) and, at its deadline,
    dead-lettered saying which key, to be replayed once the key is back."""
    foreign = SecretKeys.parse(new_key_entry("elsewhere"))
    hook = legacy("wh_foreign", "app_foreign", receiver.url("/foreign"), "whsec_Zm9yZWlnbi1rZXk=")
    await producer_of_old_records.send_and_wait(
        topics.webhooks, msgspec.json.encode(seal_webhook(foreign, hook)), key=hook.id.encode())
    await asyncio.sleep(1.2)  # in force within a second (contract §6)
    async with aiohttp.ClientSession() as http:
        event = await Client(http, stack.ingest_url, hook.app_id).publish("message.received")

    async def dead_lettered() -> list[tuple[bytes | None, bytes | None]]:
        return [r for r in await records(kafka.bootstrap, topics.deliveries_dlq)
                if r[1] and event.encode() in r[1]]

    await until(dead_lettered, timeout=30)
    (_, letter), = await dead_lettered()
    assert "cannot sign: sealed under key 'elsewhere'" in msgspec.json.decode(letter)["last_error"]
    async def attempts() -> list[dict]:
        found = [msgspec.json.decode(v) for k, v in
                 await records(kafka.bootstrap, topics.attempts) if v and k == hook.id.encode()]
        return found if found and found[-1]["result"] == "dead" else []

    await until(attempts, timeout=10)  # the dead letter's record, written beside it
    *deferrals, dead = await attempts()
    assert deferrals and all(a["result"] == "deferred" and a["attempt"] == 1 for a in deferrals)
    assert all("cannot sign: sealed under key 'elsewhere'" in a["error"]
               for a in [*deferrals, dead])
    assert receiver.on("/foreign") == []
    log = stack.services["deliverer"].log()
    assert "sealed under key 'elsewhere'" in log and "Zm9yZWlnbi1rZXk" not in log
