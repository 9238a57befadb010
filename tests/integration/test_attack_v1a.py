"""A hostile review of `v1a` (ed25519) signatures (commits 6b57c26, a7c6e1b,
d068474, 16aa0e1) on the real broker: a tenant using the API, and a producer
that may write the `webhooks` topic (PLAINTEXT Kafka, the default, or a stolen
writer credential; HOOKBUS_PLAINTEXT_SECRETS=accept, the default until `make
reseal`). Each test failed against the code as it was reviewed."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer

from devtools.broker import Broker
from devtools.processes import Stack
from services.common.secrets import generate_private_key
from services.common.topics import Topics
from services.common.webhooks_view import REPAIR_HEADER
from tests.conftest import Receiver, auth, consumer_records, records, until
from tests.integration.client import Client
from tests.integration.conftest import current_record, APP, Api, assert_error

HOOKS = f"/v1/apps/{APP}/webhooks"
MAX_OLD_KEYS = 10  # Svix's ExpiringSigningKeys::MAX_OLD_KEYS


async def add_naive_retired_key(producer: AIOKafkaProducer, bootstrap: str, topics: Topics,
                                webhook_id: str) -> int:
    """The hostile write: the webhook's record as it is (its sealed key still
    opens), plus a retired key in plain text whose `expires_at` has no offset.
    Returns the version written."""
    record, partition = await current_record(bootstrap, topics.webhooks, webhook_id)
    record["retired_secrets"] = [{"secret": generate_private_key(),
                                  "expires_at": "2999-01-01T00:00:00",
                                  "signature_scheme": "v1a"}]
    record["version"] += 1
    await producer.send_and_wait(topics.webhooks, msgspec.json.encode(record),
                                 key=webhook_id.encode(), partition=partition)
    return record["version"]


# -- a tenant ---------------------------------------------------------------------

async def test_rotations_within_the_overlap_are_bounded(api: Api) -> None:
    """Every rotation (and every scheme PATCH) keeps the old key signing for the
    overlap, with no limit: a tenant can pile up thousands of keys, each parsed
    and signed with at every attempt on the deliverer's event loop and derived
    on every read on ingest's (tests/unit/test_attack_v1a.py measures the cost).
    Svix refuses a rotation that would leave more than 10 unexpired old keys."""
    status, created = await api.call("POST", HOOKS, headers=auth(APP), json={
        "target": "https://example.com/h", "signature_scheme": "v1a"})
    assert status == 201 and created is not None
    rotate = f"{HOOKS}/{created['id']}/secret/rotate"
    answers = [await api.call("POST", rotate, headers=auth(APP))
               for _ in range(MAX_OLD_KEYS + 2)]
    accepted = [s for s, _ in answers if s == 200]
    refused = [(s, b) for s, b in answers if s != 200]
    _, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert fetched is not None
    assert refused, (f"{len(accepted)} rotations in a row accepted; every delivery now "
                     f"carries {len(fetched['public_keys'])} v1a signatures")
    for status, body in refused:
        assert_error(status, body, status)
        assert 400 <= status < 500
    assert len(fetched["public_keys"]) <= 1 + MAX_OLD_KEYS


# -- a producer that may write the webhooks topic ------------------------------------

async def test_a_naive_retired_expiry_in_a_record_is_no_500_on_reads(
    api: Api, kafka: Broker, topics: Topics, producer: AIOKafkaProducer,
) -> None:
    """ingest's reads now derive `public_keys` from `signing_keys(now)`, which
    compares each retired key's expiry with an aware `now`; a record whose expiry
    has no offset (msgspec reads it as naive) makes that a TypeError: GET of the
    webhook and the list of its whole app are 500s (so is a rotation or PATCH),
    for as long as the record stands. The writer may add such a record to any
    app it likes."""
    status, created = await api.call("POST", HOOKS, headers=auth(APP), json={
        "target": "https://example.com/h", "signature_scheme": "v1a"})
    assert status == 201 and created is not None
    version = await add_naive_retired_key(producer, kafka.bootstrap, topics, created["id"])

    async def repaired() -> bool:  # ingest read it, found it unreadable, wrote the current one
        found = [r for r in await consumer_records(kafka.bootstrap, topics.webhooks)
                 if r.key == created["id"].encode()]
        return len(found) >= 3 and any(name == REPAIR_HEADER for name, _ in found[-1].headers)

    await until(repaired)
    status, body = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert status == 200 and body is not None, body
    assert body["version"] == version - 1  # the unreadable record did not win
    status, body = await api.call("GET", HOOKS, headers=auth(APP))
    assert status == 200, body


async def test_a_naive_retired_expiry_in_a_record_does_not_stop_the_deliverer(
    http: aiohttp.ClientSession, stack: Stack, kafka: Broker, topics: Topics,
    receiver: Receiver, producer: AIOKafkaProducer,
) -> None:
    """The same record at the deliverer: `keys_of` raises TypeError inside the
    attempt, which catches only ValueError-like errors; the task's failure is
    fatal ("delivery task … failed; stopping"), so the deliverer exits, and after
    each restart it meets the same task again: every tenant's deliveries stop."""
    client = Client(http, stack.ingest_url, "app_naive")
    hook = await client.create_webhook(target=receiver.url("/naive"), triggers=["*"],
                                       signature_scheme="v1a")
    await add_naive_retired_key(producer, kafka.bootstrap, topics, hook["id"])
    await asyncio.sleep(1.5)  # in force within a second (contract §6)
    event = await client.publish("message.received")

    async def settled() -> bool:
        attempted = any(v and event.encode() in v
                        for _, v in await records(kafka.bootstrap, topics.attempts))
        return attempted or not stack.services["deliverer"].alive

    await until(settled, timeout=40)
    deliverer = stack.services["deliverer"]
    assert deliverer.alive, "the deliverer exited:\n" + deliverer.log()[-1500:]
    await receiver.wait_for("/naive", event, timeout=10)
