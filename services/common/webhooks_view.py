"""A live, in-memory copy of the compacted `webhooks` topic, and the only way to
write it.

Every instance of every service reads the whole topic, so each sees every
subscription; nothing may be routed or delivered before `ready`. Which record
wins is decided by `WebhookLog` (pure, the same in every reader); this module
is its I/O shell.

Placement: the rules need every record of a key in one partition (compaction
keeps the last record per key and partition; readers interleave partitions in
any order), and the per-app limit needs all of an app's webhooks in one
partition. So `new_id` draws webhook ids until the default partitioner (murmur2
of the key, as every Kafka client computes it) puts the id in the partition the
app id hashes to, and `write` sends a webhook's records to the partition its
current record lives in, which for these ids is where any writer that keys by
id (an older deliverer or ingest, a tool) puts them too. Webhooks written before
versions stay in the partition their id hashed to; the limit in the log counts
an app's webhooks in the app's partition only, so it is exact for webhooks
created since (ingest also counts all of them before it writes). Adding
partitions to the topic moves where keys hash to: do not.

A view built with `repair_with` (ingest's) appends, once loaded, a repair after
every record that lost: see `WebhookLog.take_repairs`.

Secrets: a view given `keys` (ingest's, the deliverer's) seals every secret of a
record it writes and opens every secret of a record it reads (`sealing`), so a
Webhook in memory holds plain secrets and the topic never does. A record whose
secrets it cannot open (its key is not configured, or it was altered) is kept
with its secrets as read: `secret_problem` says why, and it cannot be written
(`SecretsUnopened`) until its key is back. A view without keys (the router's)
never opens or writes secrets."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from schemas.webhooks import Webhook, webhook_decoder
from services.common.config import KafkaAccess
from services.common.ids import new_id
from services.common.sealing import (
    SealingError,
    SecretKeys,
    key_ids,
    open_webhook,
    seal_webhook,
)
from services.common.topic_follower import TopicFollower
from services.common.webhook_log import (
    DELETED_CAPACITY,
    Outcome,
    WebhookLog,
    Written,
    digest_of,
)

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

OnChange = Callable[[str, Webhook | None], None]
ProducerOf = Callable[[], AIOKafkaProducer | None]

REPAIR_HEADER = "hookbus-repair"  # on repairs: a copy of a record that was applied
_REPAIR_HEADERS = [(REPAIR_HEADER, b"1")]
CONFIRM_TIMEOUT = 10.0  # seconds a write waits to read its own record back
_ID_DRAWS = 100_000  # one draw in n partitions hits: this many never all miss
_REPAIR_BACKOFF = 1.0


class WriteNotConfirmed(Exception):
    """A write was acknowledged by Kafka but this instance has not read it back in
    time, so whether it won is unknown (a later read shows it)."""


class SecretsUnopened(Exception):
    """A write of a webhook whose current record's secrets this view cannot open:
    rewriting them would lose them (or keep values bound to what the write changes)."""


class WebhooksView:
    def __init__(self, bootstrap: KafkaAccess, topic: str, on_change: OnChange | None = None, *,
                 keep: bool = True, repair_with: ProducerOf | None = None,
                 confirm_timeout: float = CONFIRM_TIMEOUT,
                 deleted_capacity: int = DELETED_CAPACITY,
                 keys: SecretKeys | None = None, keep_raw: bool = False) -> None:
        """`keep=False`: only call `on_change` and keep what the rules need per id
        (the router needs its index alone, and 100,000 full records cost memory).
        `repair_with`: the producer to append repairs with (ingest's), once it
        exists; needs `keep`. `keys`: the keys that seal and open secrets; needed
        to write. `keep_raw`: keep each current record's bytes (`raw`)."""
        if repair_with is not None and not keep:
            raise ValueError("a view that repairs must keep the records")
        self._on_change = on_change
        self._keep = keep
        self._repair_with = repair_with
        self._confirm_timeout = confirm_timeout
        self._log = WebhookLog(deleted_capacity, home=self._home)
        self._webhooks: dict[str, Webhook] = {}
        self._values: dict[str, bytes] = {}  # current records as written (for repairs)
        self._by_app: dict[str, dict[str, Webhook]] = {}
        self._keys = keys
        self._keep_raw = keep_raw or repair_with is not None
        # Per current record: the key ids its secrets are sealed under (None:
        # plaintext), and why its secrets could not be opened, if they could not.
        self._sealed_under: dict[str, frozenset[str | None]] = {}
        self._unopened: dict[str, str] = {}
        self._writing: Counter[str] = Counter()  # ids with a write awaiting confirmation
        self._outcomes: dict[tuple[int, int], tuple[str, asyncio.Future[Outcome]]] = {}
        self._repairs_due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._report: asyncio.Task[None] | None = None
        self._follower = TopicFollower(bootstrap, topic, self._apply)
        self.ready = self._follower.ready

    def __len__(self) -> int:
        return len(self._log)

    def get(self, webhook_id: str) -> Webhook | None:
        return self._webhooks.get(webhook_id)

    def is_deleted(self, webhook_id: str) -> bool:
        """Whether a tombstone for `webhook_id` was seen (a delete is final)."""
        return self._log.is_deleted(webhook_id)

    def ids(self) -> list[str]:
        """The ids of the current webhooks (a view that keeps them)."""
        return list(self._webhooks)

    def secret_problem(self, webhook_id: str) -> str | None:
        """Why the current record's secrets could not be opened (None: they were)."""
        return self._unopened.get(webhook_id)

    def raw(self, webhook_id: str) -> bytes | None:
        """The current record's bytes as written (a view that keeps them)."""
        return self._values.get(webhook_id)

    def sealed_under(self, webhook_id: str) -> frozenset[str | None]:
        """The ids of the keys the current record's secrets are sealed under
        (None for a plaintext secret, written before sealing): `make reseal`."""
        return self._sealed_under.get(webhook_id, frozenset())

    def of_app(self, app_id: str) -> list[Webhook]:
        return sorted(self._by_app.get(app_id, {}).values(), key=lambda w: w.created_at)

    async def new_id(self, producer: AIOKafkaProducer, app_id: str) -> str:
        """A new webhook id (`wh_…`) that hashes to the partition of `app_id`."""
        partitions = await self._partitions(producer)
        home = _partition_of(app_id, partitions)
        for _ in range(_ID_DRAWS):
            webhook_id = new_id("wh")
            if _partition_of(webhook_id, partitions) == home:
                return webhook_id
        raise RuntimeError(f"no webhook id for partition {home} in {_ID_DRAWS} draws")

    async def write(self, producer: AIOKafkaProducer, webhook: Webhook) -> bool:
        """Append `webhook` (whose `version` is the one it replaces plus one, 1
        for a new webhook, with an id from `new_id`) to its partition, wait until
        this view has read it back, and answer whether it is now the current
        record. False: it lost (stale version, deleted, over the app's limit).
        Raises `KafkaError`, `WriteNotConfirmed` when the record is not read
        back in time, `SecretsUnopened` when the current record's secrets
        cannot be opened here."""
        if self._keys is None:
            raise RuntimeError("a view without secret keys cannot write webhooks")
        if (problem := self._unopened.get(webhook.id)) is not None:
            raise SecretsUnopened(problem)
        current = self._log.current(webhook.id)
        partition = (current.partition if current is not None
                     else _partition_of(webhook.id, await self._partitions(producer)))
        sealed = _encoder.encode(seal_webhook(self._keys, webhook))
        outcome = await self._append(producer, webhook.id, sealed, partition)
        if not outcome.holds:
            log.info("webhook write lost: %s", outcome.reason,
                     extra={"webhook_id": webhook.id, "version": webhook.version})
        return outcome.holds

    async def delete(self, producer: AIOKafkaProducer, webhook_id: str) -> bool:
        """Append a tombstone for `webhook_id` to its partition and wait until this
        view has read it back: True once the webhook is deleted (for good). False,
        writing nothing, when this view does not know the webhook."""
        if self._log.is_deleted(webhook_id):
            return True
        current = self._log.current(webhook_id)
        if current is None:
            return False
        outcome = await self._append(producer, webhook_id, None, current.partition)
        return outcome.holds

    async def start(self) -> asyncio.Task[None]:
        """Start following the topic (and repairing, with `repair_with`); the
        returned task's failure is fatal."""
        following = await self._follower.start()
        if self._keys is not None:  # (not among `_tasks`, which live as long as the view)
            self._report = asyncio.create_task(self._report_unopened(),
                                               name="report unopened secrets")
        if self._repair_with is None:
            return following
        repairing = asyncio.create_task(self._repair_forever(),
                                        name=f"repair {self._follower.topic}")
        supervising = asyncio.create_task(self._supervise(following, repairing),
                                          name=f"follow {self._follower.topic}")
        self._tasks = [supervising, repairing]
        return supervising

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._report] if self._report else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._follower.stop()

    def _home(self, webhook_id: str) -> int | None:
        """The partition every writer puts `webhook_id` in (see the module's
        placement note), once the topic's partitions are known."""
        partitions = self._follower.partitions
        return _partition_of(webhook_id, partitions) if partitions else None

    async def _partitions(self, producer: AIOKafkaProducer) -> list[int]:
        return sorted(await producer.partitions_for(self._follower.topic))

    async def _append(self, producer: AIOKafkaProducer, webhook_id: str, value: bytes | None,
                      partition: int) -> Outcome:
        self._writing[webhook_id] += 1
        try:
            sent = await producer.send_and_wait(self._follower.topic, value,
                                                key=webhook_id.encode(), partition=partition)
            where = (sent.partition, sent.offset)
            _, outcome = self._outcomes.setdefault(
                where, (webhook_id, asyncio.get_running_loop().create_future()))
            try:
                async with asyncio.timeout(self._confirm_timeout):
                    return await outcome
            except TimeoutError:
                raise WriteNotConfirmed(
                    f"webhook {webhook_id}: record {where[0]}@{where[1]} not read back within "
                    f"{self._confirm_timeout:g}s") from None
        finally:
            self._writing[webhook_id] -= 1
            if not self._writing[webhook_id]:
                del self._writing[webhook_id]
                for where in [w for w, (i, _) in self._outcomes.items() if i == webhook_id]:
                    del self._outcomes[where]

    def _apply(self, record: ConsumerRecord) -> None:
        if record.key is None:
            log.error("skipping a webhook record without a key at %d@%d",
                      record.partition, record.offset)
            return
        webhook_id = record.key.decode(errors="replace")
        webhook: Webhook | None = None
        if record.value is None:
            outcome = self._log.apply(record.partition, webhook_id, None)
        else:
            try:
                webhook = webhook_decoder.decode(record.value)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # (invalid UTF-8)
                log.error("undecodable webhook record (key %r): %s", webhook_id, exc)
            if webhook is None or webhook.id != webhook_id:
                webhook = None
                outcome = self._log.apply_unreadable(record.partition, webhook_id)
            else:
                outcome = self._log.apply(record.partition, webhook_id, Written(
                    webhook.version, webhook.app_id, webhook.app_limit, digest_of(record.value),
                    is_repair=_is_repair(record)))
        if outcome.kind in ("created", "updated"):
            assert webhook is not None
            webhook = self._open(webhook)
            self._keep_current(webhook, record.value)
        elif outcome.kind == "deleted":
            self._forget(webhook_id)
        elif outcome.kind == "ignored":
            log.info("webhook record at %d@%d lost: %s", record.partition, record.offset,
                     outcome.reason, extra={"webhook_id": webhook_id})
            if outcome.repair:
                self._repairs_due.set()
        if webhook_id in self._writing:
            _, waiting = self._outcomes.setdefault(
                (record.partition, record.offset),
                (webhook_id, asyncio.get_running_loop().create_future()))
            if not waiting.done():
                waiting.set_result(outcome)

    def _open(self, webhook: Webhook) -> Webhook:
        """`webhook` with its secrets opened, when this view has keys."""
        if self._keys is None:
            return webhook
        self._unopened.pop(webhook.id, None)
        try:
            if self._keep:
                self._sealed_under[webhook.id] = key_ids(webhook)
            return open_webhook(self._keys, webhook)
        except SealingError as exc:
            if self.ready.is_set():  # while loading, a later record may supersede it
                log.error("webhook secrets cannot be opened: %s", exc,
                          extra={"webhook_id": webhook.id})
            self._unopened[webhook.id] = str(exc)
            return webhook

    async def _report_unopened(self) -> None:
        """Once loaded, say which current records' secrets cannot be opened."""
        await self.ready.wait()
        plain = sum(1 for under in self._sealed_under.values() if None in under)
        if plain:
            log.warning("%d webhooks hold values in plain text (written before sealing): run "
                        "`make reseal`, then set HOOKBUS_PLAINTEXT_SECRETS=refuse", plain)
        if self._unopened:
            shown = "; ".join(f"{i}: {p}" for i, p in list(self._unopened.items())[:3])
            log.error("%d webhooks' secrets cannot be opened; attempts to them fail until "
                      "HOOKBUS_SECRET_KEYS holds their key (%s%s)", len(self._unopened), shown,
                      "; …" if len(self._unopened) > 3 else "")

    def _keep_current(self, webhook: Webhook, value: bytes) -> None:
        if self._keep:
            old = self._webhooks.get(webhook.id)
            if old is not None and old.app_id != webhook.app_id:
                self._by_app[old.app_id].pop(webhook.id, None)
            self._webhooks[webhook.id] = webhook
            self._by_app.setdefault(webhook.app_id, {})[webhook.id] = webhook
            if self._keep_raw:
                self._values[webhook.id] = value
        if self._on_change:
            self._on_change(webhook.id, webhook)

    def _forget(self, webhook_id: str) -> None:
        old = self._webhooks.pop(webhook_id, None)
        self._values.pop(webhook_id, None)
        self._sealed_under.pop(webhook_id, None)
        self._unopened.pop(webhook_id, None)
        if old is not None:
            app = self._by_app[old.app_id]
            del app[webhook_id]
            if not app:
                del self._by_app[old.app_id]
        if self._on_change:
            self._on_change(webhook_id, None)

    async def _repair_forever(self) -> None:
        """Once loaded (so that only the last record of each key counts), append a
        repair for every id whose last record lost. Every ingest replica does it;
        duplicates are no-ops."""
        assert self._repair_with is not None
        await self.ready.wait()
        while True:
            await self._repairs_due.wait()
            self._repairs_due.clear()
            producer = self._repair_with()
            if producer is None:  # ingest's producer is not up yet
                await asyncio.sleep(0.1)
                self._repairs_due.set()
                continue
            repairs = self._log.take_repairs()
            try:
                sent = [await producer.send(
                    self._follower.topic,
                    None if repair.tombstone else self._values[repair.webhook_id],
                    key=repair.webhook_id.encode(), partition=repair.partition,
                    headers=_REPAIR_HEADERS,
                ) for repair in repairs]
                await asyncio.gather(*sent)
            except KafkaError as exc:
                log.warning("webhook repairs not written, retrying: %r", exc)
                self._log.owe_repairs(repairs)
                await asyncio.sleep(_REPAIR_BACKOFF)
                self._repairs_due.set()
                continue
            for repair in repairs:
                log.info("repaired webhook record (%s)",
                         "tombstone" if repair.tombstone else "current record again",
                         extra={"webhook_id": repair.webhook_id})

    @staticmethod
    async def _supervise(*tasks: asyncio.Task[None]) -> None:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        raise RuntimeError("following the webhooks topic stopped")


def _is_repair(record: ConsumerRecord) -> bool:
    return any(name == REPAIR_HEADER for name, _ in record.headers or ())


def _partition_of(key: str, partitions: list[int]) -> int:
    """Where the default partitioner of every Kafka client puts `key`."""
    return DefaultPartitioner()(key.encode(), partitions, partitions)
