"""The recent delivery attempts of every webhook, followed from the `attempts`
topic, at most `per_webhook` each, served newest first a page at a time.

A page's cursor is the Kafka offset of its last attempt: attempts are keyed by
webhook id, so one webhook's attempts sit in one partition, in offset order."""

from __future__ import annotations

import logging
from collections import deque

import msgspec
from aiokafka import ConsumerRecord

from schemas.attempts import Attempt, attempt_decoder
from services.common.config import KafkaAccess
from services.common.topic_follower import TopicFollower

log = logging.getLogger(__name__)


class AttemptsLog:
    def __init__(self, kafka: KafkaAccess, topic: str, per_webhook: int = 100) -> None:
        self._per_webhook = per_webhook
        self._by_webhook: dict[str, deque[tuple[int, Attempt]]] = {}
        self.follower = TopicFollower(kafka, topic, self._apply)

    def page(self, webhook_id: str, limit: int, before: int | None) -> tuple[list[Attempt], int | None]:
        """Up to `limit` attempts older than offset `before`, newest first, and
        the cursor of the next page (None at the end)."""
        found: list[tuple[int, Attempt]] = []
        for offset, attempt in reversed(self._by_webhook.get(webhook_id, ())):
            if before is not None and offset >= before:
                continue
            if len(found) == limit:
                return [a for _, a in found], found[-1][0]
            found.append((offset, attempt))
        return [a for _, a in found], None

    def _apply(self, record: ConsumerRecord) -> None:
        if record.value is None:
            log.error("skipping a null attempt record at offset %d", record.offset)
            return
        try:
            attempt = attempt_decoder.decode(record.value)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # (invalid UTF-8)
            log.error("skipping an undecodable attempt record at offset %d: %s",
                      record.offset, exc)
            return
        attempts = self._by_webhook.get(attempt.webhook_id)
        if attempts is None:
            attempts = self._by_webhook[attempt.webhook_id] = deque(maxlen=self._per_webhook)
        attempts.append((record.offset, attempt))
