"""Webhook records have versions (issue 9, item 6), on the real broker: every write
names the version it replaces, a stale one loses (409, or retried), a delete is
final, the per-app limit holds across two ingest replicas, the deliverer's
auto-disable never overwrites a newer record, and writes wait for the view."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from aiokafka.partitioner import DefaultPartitioner

from devtools.broker import Broker, free_port
from schemas.webhooks import Webhook, webhook_decoder
from services.common.config import KafkaSettings
from services.common.target_policy import TargetPolicy
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView
from services.ingest.app import create_app
from services.ingest.settings import Settings
from services.ingest.state import INGEST
from tests.conftest import JWT_SECRET, SECRET_KEYS, PARTITIONS, auth, records, until
from tests.integration.conftest import APP, Api, assert_error

HOOKS = f"/v1/apps/{APP}/webhooks"
LIMIT = 3


async def create(api: Api, **body: object) -> dict:
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"} | body)
    assert status == 201 and created is not None, created
    return created


async def fresh_view(bootstrap: str, topic: str) -> WebhooksView:
    """A new reader of the whole topic, as a service starting now would be."""
    view = WebhooksView(bootstrap, topic, keys=SECRET_KEYS)
    await view.start()
    await view.ready.wait()
    return view


async def last_record(api: Api, webhook_id: str) -> bytes | None:
    """The value of the last record for `webhook_id`: what compaction keeps."""
    values = [v for k, v in await records(api.bootstrap, api.topics.webhooks)
              if k == webhook_id.encode()]
    assert values, webhook_id
    return values[-1]






async def start_ingest(kafka: Broker, topics: Topics, http: aiohttp.ClientSession
                       ) -> tuple[Api, web.AppRunner, web.Application]:
    settings = Settings(
        kafka=KafkaSettings(kafka.bootstrap, topics.prefix), jwt_secret=JWT_SECRET,
        secret_keys=SECRET_KEYS,
        http_port=free_port(), target_policy=TargetPolicy(allow_http=False),
        max_webhooks_per_app=LIMIT,
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    api = Api(f"http://127.0.0.1:{settings.http_port}", http, topics, kafka.bootstrap)
    await until(lambda: _ready(api))
    return api, runner, app


async def _ready(api: Api) -> bool:
    return (await api.call("GET", "/readyz"))[0] == 200


@pytest.fixture
async def replicas(kafka: Broker, topics: Topics) -> AsyncIterator[list[Api]]:
    """Two ingest instances on two ports, one set of topics."""
    async with aiohttp.ClientSession() as http:
        started = [await start_ingest(kafka, topics, http) for _ in range(2)]
        try:
            yield [api for api, _, _ in started]
        finally:
            for _, runner, _ in started:
                await runner.cleanup()


async def test_create_patch_rotate_in_quick_succession_keeps_the_patch(api: Api) -> None:
    created = await create(api, description="before")
    assert created["version"] == 1
    status, patched = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                     json={"description": "after"})
    assert status == 200 and patched is not None and patched["version"] == 2
    status, rotated = await api.call("POST", f"{HOOKS}/{created['id']}/secret/rotate",
                                     headers=auth(APP))
    assert status == 200 and rotated is not None

    status, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert status == 200 and fetched is not None
    assert (fetched["description"], fetched["secret"], fetched["version"]) == \
        ("after", rotated["secret"], 3)
    view = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        stored = view.get(created["id"])
        assert stored is not None
        assert (stored.description, stored.secret, stored.version) == \
            ("after", rotated["secret"], 3)
    finally:
        await view.stop()


async def test_a_patch_and_a_rotation_racing_on_two_replicas_both_land(
    replicas: list[Api]
) -> None:
    one, two = replicas
    created = await create(one)
    path = f"{HOOKS}/{created['id']}"

    async def seen_by_two() -> bool:
        return (await two.call("GET", path, headers=auth(APP)))[0] == 200

    await until(seen_by_two)
    for n in range(5):
        (s1, patched), (s2, rotated) = await asyncio.gather(
            one.call("PATCH", path, headers=auth(APP), json={"description": f"d{n}"}),
            two.call("POST", f"{path}/secret/rotate", headers=auth(APP)),
        )
        assert (s1, s2) == (200, 200), (patched, rotated)
        assert patched is not None and rotated is not None
        version = 1 + 2 * (n + 1)
        await until(lambda: _version_at_least(one, path, version))  # two's write read too
        _, fetched = await one.call("GET", path, headers=auth(APP))
        assert fetched is not None and fetched["version"] == version
        assert fetched["description"] == f"d{n}" and fetched["secret"] == rotated["secret"]


async def _version_at_least(api: Api, path: str, version: int) -> bool:
    _, body = await api.call("GET", path, headers=auth(APP))
    return body is not None and body["version"] >= version


async def test_delete_is_final(api: Api, producer: AIOKafkaProducer) -> None:
    created = await create(api)
    path = f"{HOOKS}/{created['id']}"
    stale = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        before = stale.get(created["id"])  # a copy from before the delete
        assert before is not None
        assert (await api.call("DELETE", path, headers=auth(APP)))[0] == 204
        assert_error(*await api.call("PATCH", path, headers=auth(APP),
                                     json={"description": "back"}), 404)
        assert_error(*await api.call("POST", f"{path}/secret/rotate", headers=auth(APP)), 404)
        assert_error(*await api.call("DELETE", path, headers=auth(APP)), 404)

        # A writer whose copy predates the delete writes the next version anyway.
        late = msgspec.structs.replace(before, description="back", version=2)
        assert await stale.write(producer, late) is False
    finally:
        await stale.stop()

    reader = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        assert reader.get(created["id"]) is None and reader.is_deleted(created["id"])
        assert len(reader) == 0
    finally:
        await reader.stop()

    async def tombstone_is_last() -> bool:  # ingest's repair: compaction keeps the delete
        return await last_record(api, created["id"]) is None

    await until(tombstone_is_last)
    assert_error(*await api.call("GET", path, headers=auth(APP)), 404)


async def test_a_stale_explicit_version_is_a_409_and_writes_nothing(api: Api) -> None:
    created = await create(api, description="v1")
    path = f"{HOOKS}/{created['id']}"
    status, patched = await api.call("PATCH", path, headers=auth(APP),
                                     json={"description": "v2", "version": 1})
    assert status == 200 and patched is not None and patched["version"] == 2
    written = len(await records(api.bootstrap, api.topics.webhooks))

    status, body = await api.call("PATCH", path, headers=auth(APP),
                                  json={"description": "stale", "version": 1})
    assert_error(status, body, 409, "version")
    assert body is not None and body["error"]["status"] == "FAILED_PRECONDITION"
    status, body = await api.call("POST", f"{path}/secret/rotate", headers=auth(APP),
                                  json={"version": 1})
    assert_error(status, body, 409, "version")
    assert len(await records(api.bootstrap, api.topics.webhooks)) == written

    view = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        stored = view.get(created["id"])
        assert stored is not None and (stored.description, stored.version) == ("v2", 2)
        assert stored.secret == created["secret"]
    finally:
        await view.stop()


async def test_an_explicit_version_that_loses_the_race_is_a_409(
    api: Api, producer: AIOKafkaProducer
) -> None:
    created = await create(api)
    path = f"{HOOKS}/{created['id']}"
    # Another writer takes version 2 while this PATCH (naming version 1) is under way:
    # the view of ingest has not read it yet when the PATCH starts, or has.
    other = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        current = other.get(created["id"])
        assert current is not None
        (won, (status, body)) = await asyncio.gather(
            other.write(producer, msgspec.structs.replace(current, description="other",
                                                          version=2)),
            api.call("PATCH", path, headers=auth(APP), json={"description": "mine",
                                                              "version": 1}),
        )
    finally:
        await other.stop()
    assert won != (status == 200)  # exactly one of the two writes of version 2 won
    if status != 200:
        assert_error(status, body, 409, "version")
    _, fetched = await api.call("GET", path, headers=auth(APP))
    assert fetched is not None and fetched["version"] == 2
    assert fetched["description"] == ("other" if won else "mine")


async def test_two_replicas_never_pass_the_per_app_limit(replicas: list[Api]) -> None:
    attempts = 12
    results = await asyncio.gather(*(
        replicas[n % 2].call("POST", HOOKS, headers=auth(APP),
                             json={"target": f"https://example.com/{n}"})
        for n in range(attempts)
    ))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: LIMIT, 409: attempts - LIMIT}, results
    for status, body in results:
        if status == 409:
            assert_error(status, body, 409)
            assert body is not None and body["error"]["status"] == "FAILED_PRECONDITION"
    created = {body["id"] for status, body in results if status == 201 and body}

    api = replicas[0]
    view = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        assert {w.id for w in view.of_app(APP)} == created
    finally:
        await view.stop()
    # Every create, won or lost, went to the app's partition, where the log counts,
    # and each that lost there is followed by a repair tombstone (ingest's).
    async def losers_repaired() -> bool:
        last: dict[bytes, bytes | None] = {}
        for key, value in await records(api.bootstrap, api.topics.webhooks):
            assert key is not None
            last[key] = value
        return all(value is None for key, value in last.items()
                   if key.decode() not in created)

    await until(losers_repaired)
    ids = {k.decode() for k, _ in await records(api.bootstrap, api.topics.webhooks) if k}
    print(f"{len(ids) - LIMIT} of {statuses[409]} refused creates lost in the log")
    assert {p for i in ids for p in await partitions_of(api, i)} == {_partition(APP)}
    for replica in replicas:
        _, listed = await replica.call("GET", HOOKS, headers=auth(APP))
        assert listed is not None and {w["id"] for w in listed["webhooks"]} <= created
    status, body = await replicas[1].call("POST", HOOKS, headers=auth(APP),
                                          json={"target": "https://example.com/more"})
    assert_error(status, body, 409)


def _partition(key: str, partitions: int = PARTITIONS) -> int:
    return DefaultPartitioner()(key.encode(), list(range(partitions)), [])


async def test_webhook_writes_wait_for_the_view(api: Api, kafka: Broker, topics: Topics) -> None:
    created = await create(api)
    async with aiohttp.ClientSession() as http:
        other, runner, app = await start_ingest(kafka, topics, http)
        try:
            # Stands in for a view still reading the topic (deterministic, unlike
            # racing a real load): the handlers consult `view.ready`.
            app[INGEST].view.ready = asyncio.Event()
            path = f"{HOOKS}/{created['id']}"
            written = len(await records(api.bootstrap, api.topics.webhooks))
            for method, url, body in [("POST", HOOKS, {"target": "https://example.com/x"}),
                                      ("PATCH", path, {"description": "x"}),
                                      ("POST", f"{path}/secret/rotate", None),
                                      ("DELETE", path, None)]:
                status, error = await other.call(method, url, headers=auth(APP), json=body)
                assert_error(status, error, 503)
                assert error is not None and error["error"]["status"] == "UNAVAILABLE"
            assert (await other.call("GET", "/readyz"))[0] == 503
            assert len(await records(api.bootstrap, api.topics.webhooks)) == written
        finally:
            await runner.cleanup()


async def test_an_auto_disable_from_a_stale_copy_never_overwrites_a_newer_record(
    api: Api, producer: AIOKafkaProducer
) -> None:
    created = await create(api)
    path = f"{HOOKS}/{created['id']}"
    deliverer = await fresh_view(api.bootstrap, api.topics.webhooks)  # as the deliverer has
    try:
        copy = deliverer.get(created["id"])
        assert copy is not None and copy.version == 1
        status, rotated = await api.call("POST", f"{path}/secret/rotate", headers=auth(APP))
        assert status == 200 and rotated is not None

        async def rotation_seen() -> bool:
            current = deliverer.get(created["id"])
            return current is not None and current.version == 2

        at = datetime.now(UTC)
        stale = msgspec.structs.replace(copy, enabled=False, disabled_reason="410",
                                        version=copy.version + 1, updated_at=at)
        assert await deliverer.write(producer, stale) is False
        await until(rotation_seen)  # it has read the rotation that won, by now
        _, fetched = await api.call("GET", path, headers=auth(APP))
        assert fetched is not None and fetched["enabled"] is True
        assert fetched["secret"] == rotated["secret"] and fetched["version"] == 2

        async def repaired() -> bool:  # the rotation is again the last record
            value = await last_record(api, created["id"])
            return value is not None and webhook_decoder.decode(value).version == 2

        await until(repaired)

        # Written from the current copy, the same change wins.
        current = deliverer.get(created["id"])
        assert current is not None
        disabled = msgspec.structs.replace(current, enabled=False, disabled_reason="410",
                                           version=current.version + 1, updated_at=at)
        assert await deliverer.write(producer, disabled) is True
        assert deliverer.get(created["id"]) == disabled
    finally:
        await deliverer.stop()
    await until(lambda: _version_at_least(api, path, 3))
    _, fetched = await api.call("GET", path, headers=auth(APP))
    assert fetched is not None
    assert (fetched["enabled"], fetched["disabled_reason"], fetched["version"]) == \
        (False, "410", 3)
    assert fetched["secret"] == rotated["secret"]


async def test_a_write_keyed_the_old_way_lands_beside_the_webhook_and_loses(
    api: Api, producer: AIOKafkaProducer
) -> None:
    """Writers that let the default partitioner place a record by webhook id (the
    deliverer and ingest before versions, tools) put it in the webhook's own
    partition: the ids ingest makes hash there."""
    created = await create(api)
    path = f"{HOOKS}/{created['id']}"
    assert _partition(created["id"]) == _partition(APP)
    status, patched = await api.call("PATCH", path, headers=auth(APP),
                                     json={"description": "kept"})
    assert status == 200
    reader = await fresh_view(api.bootstrap, api.topics.webhooks)
    try:
        current = reader.get(created["id"])
        assert current is not None
        old_style = msgspec.structs.replace(current, enabled=False, version=0, description="")
    finally:
        await reader.stop()
    await producer.send_and_wait(api.topics.webhooks, msgspec.json.encode(old_style),
                                 key=created["id"].encode())
    assert await partitions_of(api, created["id"]) == {_partition(APP)}

    async def repaired() -> bool:
        value = await last_record(api, created["id"])
        return value is not None and webhook_decoder.decode(value).version == 2

    await until(repaired)
    _, fetched = await api.call("GET", path, headers=auth(APP))
    assert fetched is not None
    assert (fetched["enabled"], fetched["description"], fetched["version"]) == (True, "kept", 2)


async def test_a_lost_record_left_unrepaired_by_a_crash_is_repaired_when_ingest_starts(
    kafka: Broker, topics: Topics, producer: AIOKafkaProducer
) -> None:
    """Compaction must never keep a record that lost: if every ingest was down when
    it was written, the first ingest to load the topic appends the repair."""
    at = datetime.now(UTC)
    winner = Webhook(id="wh_crash", app_id=APP, target="https://example.com/w",
                     triggers=["message"], secret="whsec_d2lu", created_at=at, updated_at=at,
                     version=2)
    loser = msgspec.structs.replace(winner, target="https://example.com/stale")
    gone = msgspec.structs.replace(winner, id="wh_gone")
    for record in (winner, loser):
        await producer.send_and_wait(topics.webhooks, msgspec.json.encode(record),
                                     key=record.id.encode())
    await producer.send_and_wait(topics.webhooks, None, key=gone.id.encode())
    await producer.send_and_wait(topics.webhooks, msgspec.json.encode(gone),
                                 key=gone.id.encode())
    async with aiohttp.ClientSession() as http:
        api, runner, _ = await start_ingest(kafka, topics, http)
        try:
            async def repaired() -> bool:
                return (await last_record(api, gone.id) is None
                        and await last_record(api, winner.id) == msgspec.json.encode(winner))

            await until(repaired)
            _, fetched = await api.call("GET", f"{HOOKS}/{winner.id}", headers=auth(APP))
            assert fetched is not None and fetched["target"] == winner.target
            assert_error(*await api.call("GET", f"{HOOKS}/{gone.id}", headers=auth(APP)), 404)
        finally:
            await runner.cleanup()


async def test_legacy_records_without_a_version_are_read_and_can_be_changed(
    api: Api, producer: AIOKafkaProducer
) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    legacy = Webhook(id="wh_legacy", app_id=APP, target="https://example.com/old",
                     triggers=["message"], secret="whsec_b2xk", created_at=at, updated_at=at)
    assert b'"version"' not in msgspec.json.encode(legacy)
    # Where the previous ingest put it: the partition its id hashes to.
    await producer.send_and_wait(api.topics.webhooks, msgspec.json.encode(legacy),
                                 key=legacy.id.encode())

    async def loaded() -> bool:
        return (await api.call("GET", f"{HOOKS}/{legacy.id}", headers=auth(APP)))[0] == 200

    await until(loaded)
    _, fetched = await api.call("GET", f"{HOOKS}/{legacy.id}", headers=auth(APP))
    assert fetched is not None and fetched["version"] == 0
    status, patched = await api.call("PATCH", f"{HOOKS}/{legacy.id}", headers=auth(APP),
                                     json={"description": "now versioned", "version": 0})
    assert status == 200 and patched is not None and patched["version"] == 1
    assert patched["description"] == "now versioned"
    assert len(await partitions_of(api, legacy.id)) == 1  # its records stayed together


async def partitions_of(api: Api, webhook_id: str) -> set[int]:
    consumer = AIOKafkaConsumer(api.topics.webhooks, bootstrap_servers=api.bootstrap,
                                group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        found: set[int] = set()
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                found |= {tp.partition for r in batch if r.key == webhook_id.encode()}
        return found
    finally:
        await consumer.stop()
