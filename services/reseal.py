"""`python -m services.reseal` (`make reseal`): re-seal every webhook's secrets
under the first key of `HOOKBUS_SECRET_KEYS`, while the services run.

It reads the whole `webhooks` topic like any service, then, for every webhook
whose secrets are in plain text (written before sealing) or sealed under an
older key, appends the same webhook as its next version, sealed under the first
key, through the same conditional append as every other writer: a record that
an API write (or another re-seal) beat is looked at again and re-sealed only if
it still needs it. Nothing but the sealing and the version changes.

Safe to interrupt and to run again: each webhook is done or not, and a second
run skips the done ones. Before it says done it reads the topic again: what
another writer sealed under an older key meanwhile is re-sealed too (up to three
sweeps), and anything still not under the first key is named, exit 1. A record
with fields this version does not know (written by a newer Hookbus) is left
alone and named: rewriting it would drop them. Writes are paced (`--rate`, per second) so that the
topic's other writers and readers are not crowded out. Progress goes to stderr;
the exit status is 0 when every webhook is sealed under the first key, 1 when
some could not be opened (their key is not configured: they are listed by id),
2 on a configuration error.

    HOOKBUS_SECRET_KEYS=new:…,old:… python -m services.reseal [--rate 200]
    python -m services.reseal new-key ID     # print an `ID:base64key` entry

Then every service may run with the old key dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from aiokafka import AIOKafkaProducer

from schemas.webhooks import ClientCredentials, RetiredSecret, Webhook
from services.common.config import ConfigError, Env, KafkaSettings
from services.common.kafka_clients import client_options
from services.common.sealing import (
    KeyConfigError,
    SecretKeys,
    keys_from_env,
    needs_reseal,
    new_key_entry,
)
from services.common.topics import Topics
from services.common.webhooks_view import WebhooksView

WRITE_ATTEMPTS = 5  # per webhook, when API writes keep beating the re-seal
SWEEPS = 3  # passes over what other writers sealed under an older key meanwhile
PROGRESS_EVERY = 2.0  # seconds between progress lines


@dataclass
class Summary:
    total: int = 0           # webhooks in the topic
    needed: int = 0          # of them, not sealed under the first key when loaded
    resealed: int = 0        # written by this run
    overtaken: int = 0       # sealed by another writer meanwhile, or deleted
    unopened: dict[str, str] = field(default_factory=dict)  # webhook id -> why
    contended: list[str] = field(default_factory=list)      # lost every attempt
    newer: dict[str, list[str]] = field(default_factory=dict)  # id -> fields not known here
    remaining: list[str] = field(default_factory=list)      # still not under the first key

    @property
    def complete(self) -> bool:
        return not (self.unopened or self.contended or self.newer or self.remaining)


def _plan(view: WebhooksView, keys: SecretKeys) -> tuple[list[str], Counter[str]]:
    """The ids to re-seal, and how the topic's webhooks are sealed now (by key id)."""
    todo: list[str] = []
    under: Counter[str] = Counter()
    for webhook_id in view.ids():
        sealed_under = view.sealed_under(webhook_id)
        for key_id in sealed_under:
            under["plaintext" if key_id is None else key_id] += 1
        if view.secret_problem(webhook_id) is None and needs_reseal(keys, sealed_under):
            todo.append(webhook_id)
    return todo, under


def unknown_fields(raw: bytes | None) -> list[str]:
    """Fields of a record that this version's schema does not know (a newer
    writer's): rewriting the record from the decoded struct would drop them."""
    if raw is None:
        return []
    record = msgspec.json.decode(raw)
    known = set(Webhook.__struct_fields__)
    found = [name for name in record if name not in known]
    creds = record.get("client_credentials") or {}
    found += [f"client_credentials.{name}" for name in creds
              if name not in ClientCredentials.__struct_fields__]
    for retired in record.get("retired_secrets") or []:
        found += [f"retired_secrets.{name}" for name in retired
                  if name not in RetiredSecret.__struct_fields__]
    return sorted(set(found))


async def _reseal_one(view: WebhooksView, producer: AIOKafkaProducer, keys: SecretKeys,
                      webhook_id: str, summary: Summary) -> None:
    for _ in range(WRITE_ATTEMPTS):
        current = view.get(webhook_id)
        if current is None:  # deleted meanwhile
            summary.overtaken += 1
            return
        if (problem := view.secret_problem(webhook_id)) is not None:
            summary.unopened[webhook_id] = problem
            return
        if not needs_reseal(keys, view.sealed_under(webhook_id)):
            summary.overtaken += 1  # an API write sealed it under the first key
            return
        if unknown := unknown_fields(view.raw(webhook_id)):
            summary.newer[webhook_id] = unknown
            return
        if await view.write(producer, msgspec.structs.replace(current,
                                                              version=current.version + 1)):
            summary.resealed += 1
            return
    summary.contended.append(webhook_id)


async def reseal(kafka: KafkaSettings, keys: SecretKeys, rate: float,
                 say: Callable[[str], None]) -> Summary:
    topic = Topics(kafka.topic_prefix).webhooks
    view = WebhooksView(kafka, topic, keys=keys, keep_raw=True)
    producer = AIOKafkaProducer(**client_options(kafka), acks="all", enable_idempotence=True)
    summary = Summary()
    started = time.monotonic()
    following = await view.start()
    try:
        await producer.start()
        say(f"reading {topic} ...")
        await _first(view.ready.wait(), following)
        todo, under = _plan(view, keys)
        summary.total, summary.needed = len(view.ids()), len(todo)
        summary.unopened = {i: p for i in view.ids() if (p := view.secret_problem(i))}
        sealed = ", ".join(f"{key_id} {n}" for key_id, n in sorted(under.items())) or "none"
        say(f"{summary.total} webhooks read in {time.monotonic() - started:.1f}s "
            f"(secrets by key: {sealed}); {len(todo)} to re-seal under {keys.primary!r}, "
            f"at most {rate:g}/s")
        skipped: set[str] = set()
        for sweep in range(1, SWEEPS + 1):
            if sweep > 1:  # what other writers sealed under an older key meanwhile
                todo = [i for i in _plan(view, keys)[0] if i not in skipped]
                if not todo:
                    break
                say(f"check {sweep}: {len(todo)} written meanwhile under an older key; "
                    "re-sealing them too")
            began = last = time.monotonic()
            for done, webhook_id in enumerate(todo, start=1):
                await _first(_reseal_one(view, producer, keys, webhook_id, summary), following)
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY or done == len(todo):
                    last = now
                    pace = done / max(now - began, 1e-9)
                    left = (len(todo) - done) / pace if pace else 0.0
                    say(f"{done}/{len(todo)} done ({summary.resealed} re-sealed, "
                        f"{summary.overtaken} sealed or deleted meanwhile) — "
                        f"{pace:.0f}/s, about {left:.0f}s left")
                await asyncio.sleep(max(0.0, began + done / rate - time.monotonic()))
            skipped = set(summary.unopened) | set(summary.newer) | set(summary.contended)
        # The final word comes from the topic as read now, not from the plan.
        summary.unopened = {i: p for i in view.ids() if (p := view.secret_problem(i))}
        summary.remaining = [i for i in _plan(view, keys)[0] if i not in skipped]
    finally:
        await producer.stop()
        await view.stop()
    for webhook_id, problem in sorted(summary.unopened.items()):
        say(f"cannot open {webhook_id}: {problem}")
    for webhook_id in summary.contended:
        say(f"{webhook_id}: lost {WRITE_ATTEMPTS} writes in a row to other writers; run again")
    for webhook_id, names in sorted(summary.newer.items()):
        say(f"{webhook_id}: not re-sealed: it has fields this version does not know "
            f"({', '.join(names)}); run the re-seal of the newest version")
    for webhook_id in summary.remaining:
        say(f"{webhook_id}: still sealed under an older key (written again meanwhile: does "
            "every replica have the new key first?); run again")
    say(("done: every webhook is sealed under " + repr(keys.primary)) if summary.complete
        else f"incomplete: {len(summary.unopened)} cannot be opened, "
             f"{len(summary.contended)} kept changing, {len(summary.newer)} are newer, "
             f"{len(summary.remaining)} still under an older key")
    return summary


async def _first(work, following: asyncio.Task[None]):  # type: ignore[no-untyped-def]
    """`work`'s result, or the follower's failure if it fails first."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task, following}, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        task.cancel()
        following.result()
        raise RuntimeError("following the webhooks topic stopped")
    return task.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reseal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["reseal", "new-key"], default="reseal")
    parser.add_argument("key_id", nargs="?", help="new-key: the new key's id")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="most webhooks re-sealed per second (default 200)")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} reseal  {message}", file=sys.stderr, flush=True)

    if args.command == "new-key":
        try:
            print(new_key_entry(args.key_id or f"k{time.strftime('%Y%m%d')}"))
        except KeyConfigError as exc:
            say(str(exc))
            return 2
        return 0
    if args.rate <= 0:
        parser.error("--rate must be positive")
    env = Env()
    try:
        kafka, keys = KafkaSettings.from_env(env), keys_from_env(env)
        # The re-seal is what seals plain-text records: it must open them.
        keys = dataclasses.replace(keys, refuse_plaintext=False)
    except ConfigError as exc:
        say(str(exc))
        return 2
    try:
        summary = asyncio.run(reseal(kafka, keys, args.rate, say))
    except KeyboardInterrupt:
        say("interrupted: what was re-sealed stays so; run again to finish")
        return 130
    return 0 if summary.complete else 1


if __name__ == "__main__":
    sys.exit(main())
