"""A live, in-memory copy of the compacted `webhooks` topic.

Every instance of every service reads the whole topic (no consumer group), so
each sees every subscription; `ready` is set once the copy has caught up with
the end offsets seen at start, and nothing may be routed or delivered before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.webhooks import Webhook, webhook_decoder

log = logging.getLogger(__name__)

OnChange = Callable[[str, Webhook | None], None]


class WebhooksView:
    def __init__(self, bootstrap: str, topic: str, on_change: OnChange | None = None) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._on_change = on_change
        self._webhooks: dict[str, Webhook] = {}
        self._by_app: dict[str, dict[str, Webhook]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.undecodable = 0

    def __len__(self) -> int:
        return len(self._webhooks)

    def get(self, webhook_id: str) -> Webhook | None:
        return self._webhooks.get(webhook_id)

    def of_app(self, app_id: str) -> list[Webhook]:
        return sorted(self._by_app.get(app_id, {}).values(), key=lambda w: w.created_at)

    def put(self, webhook: Webhook) -> None:
        self.delete(webhook.id, notify=False)
        self._webhooks[webhook.id] = webhook
        self._by_app.setdefault(webhook.app_id, {})[webhook.id] = webhook
        if self._on_change:
            self._on_change(webhook.id, webhook)

    def delete(self, webhook_id: str, *, notify: bool = True) -> None:
        old = self._webhooks.pop(webhook_id, None)
        if old is not None:
            app = self._by_app[old.app_id]
            del app[webhook_id]
            if not app:
                del self._by_app[old.app_id]
        if notify and self._on_change:
            self._on_change(webhook_id, None)

    async def start(self) -> asyncio.Task[None]:
        """Connect and start following the topic; returns the following task,
        whose failure the caller must treat as fatal."""
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=None,  # no group: aiokafka assigns every partition to us
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            metadata_max_age_ms=5000,
        )
        await consumer.start()
        self._consumer = consumer
        waited = 0.0
        while not consumer.assignment():
            if waited % 10 == 0 and waited:
                log.warning("waiting for the topic %s to exist", self._topic)
            await asyncio.sleep(0.25)
            waited += 0.25
        ends = await consumer.end_offsets(list(consumer.assignment()))
        self._task = asyncio.create_task(self._follow(consumer, ends), name="webhooks-view")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        pending = {tp: end for tp, end in ends.items() if end > 0}
        if not pending:
            self._mark_ready()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    self._apply(record.key, record.value)
                if tp in pending and records[-1].offset + 1 >= pending[tp]:
                    del pending[tp]
            if pending and not self.ready.is_set():
                # Compaction can leave the last offsets empty: trust the position.
                for tp in list(pending):
                    if await consumer.position(tp) >= pending[tp]:
                        del pending[tp]
            if not pending and not self.ready.is_set():
                self._mark_ready()

    def _mark_ready(self) -> None:
        log.info("webhooks view ready with %d webhooks", len(self._webhooks))
        self.ready.set()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self.delete(key.decode())
            return
        try:
            webhook = webhook_decoder.decode(value)
        except msgspec.DecodeError as exc:
            self.undecodable += 1
            log.error("skipping an undecodable webhook record (key %r): %s", key, exc)
            return
        self.put(webhook)
