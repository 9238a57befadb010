"""A hostile producer's copy of a webhook in a foreign partition, on the real
broker with a real ingest: ingest ends it there with a tombstone, so that once
the webhook is deleted and its tombstone cleaned away, no copy is left for a
fresh reader to take for the webhook (services/common/webhook_log.py)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from tests.conftest import PARTITIONS, auth, until
from tests.integration.conftest import APP, Api

HOOKS = f"/v1/apps/{APP}/webhooks"


async def _last_by_partition(api: Api, webhook_id: str) -> dict[int, bytes | None]:
    consumer = AIOKafkaConsumer(api.topics.webhooks, bootstrap_servers=api.bootstrap,
                                group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        last: dict[int, bytes | None] = {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                for record in batch:
                    if record.key == webhook_id.encode():
                        last[tp.partition] = record.value
        return last
    finally:
        await consumer.stop()


async def test_a_foreign_copy_of_a_webhook_is_ended_with_a_tombstone(
        api: Api, producer: AIOKafkaProducer) -> None:
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"})
    assert status == 201 and created is not None
    webhook_id = created["id"]
    partitions = list(range(PARTITIONS))
    home = DefaultPartitioner()(webhook_id.encode(), partitions, partitions)
    foreign = (home + 1) % PARTITIONS
    record = (await _last_by_partition(api, webhook_id))[home]
    await producer.send_and_wait(api.topics.webhooks, record, key=webhook_id.encode(),
                                 partition=foreign)

    async def ended_there() -> bool:
        return (await _last_by_partition(api, webhook_id)).get(foreign, b"") is None

    await until(ended_there)
    _, fetched = await api.call("GET", f"{HOOKS}/{webhook_id}", headers=auth(APP))
    assert fetched is not None and fetched["id"] == webhook_id  # the webhook is untouched
    assert (await api.call("DELETE", f"{HOOKS}/{webhook_id}", headers=auth(APP)))[0] == 204
    assert set((await _last_by_partition(api, webhook_id)).values()) == {None}
