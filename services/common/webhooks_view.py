"""A live, in-memory copy of the compacted `webhooks` topic.

Every instance of every service reads the whole topic, so each sees every
subscription; nothing may be routed or delivered before `ready`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas.webhooks import Webhook, webhook_decoder
from services.common.topic_follower import TopicFollower

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

OnChange = Callable[[str, Webhook | None], None]


class WebhooksView:
    def __init__(self, bootstrap: str, topic: str, on_change: OnChange | None = None, *,
                 keep: bool = True) -> None:
        """`keep=False`: only call `on_change`, keep no records (the router needs
        its index alone, and 100,000 full records cost memory)."""
        self._on_change = on_change
        self._keep = keep
        self._webhooks: dict[str, Webhook] = {}
        self._by_app: dict[str, dict[str, Webhook]] = {}
        self._deleted: set[str] = set()
        self._follower = TopicFollower(bootstrap, topic, self._apply)
        self.ready = self._follower.ready

    def __len__(self) -> int:
        return len(self._webhooks)

    def get(self, webhook_id: str) -> Webhook | None:
        return self._webhooks.get(webhook_id)

    def is_deleted(self, webhook_id: str) -> bool:
        """Whether a tombstone for `webhook_id` was seen (a delete is final)."""
        return webhook_id in self._deleted

    async def write(self, producer: AIOKafkaProducer, webhook: Webhook) -> bool:
        """Write `webhook` to the topic; True when it is now the current record.
        (Placeholder: versions and conditional writes land with issue 9.)"""
        await producer.send_and_wait(self._follower.topic, _encoder.encode(webhook),
                                     key=webhook.id.encode())
        self.put(webhook)
        return True

    def of_app(self, app_id: str) -> list[Webhook]:
        return sorted(self._by_app.get(app_id, {}).values(), key=lambda w: w.created_at)

    def put(self, webhook: Webhook) -> None:
        if self._keep:
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
        """Start following the topic; the returned task's failure is fatal."""
        return await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def _apply(self, record: ConsumerRecord) -> None:
        key, value = record.key, record.value
        if value is None:
            if key is not None:
                self._deleted.add(key.decode())
                self.delete(key.decode())
            return
        try:
            webhook = webhook_decoder.decode(value)
        except msgspec.DecodeError as exc:
            log.error("skipping an undecodable webhook record (key %r): %s", key, exc)
            return
        self.put(webhook)
