"""How many events go in one `POST …/events/batch`, and each batch's
`Idempotency-Key`. Pure.

The API takes 1 to 500 events a batch, all or nothing. Publishing more is a
sequence of batches, each acknowledged before the next is sent; with a key,
batch n (from 0) of a publish split in several is sent with `{key}.{n}`, so a
retry of the whole publish (the same events, the same key) repeats no batch
that was already acknowledged. A publish that fits one batch uses the key as
it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

MAX_BATCH = 500          # events a batch may hold (contract §6)
MAX_KEY_LENGTH = 255     # characters of an Idempotency-Key ingest accepts

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = MAX_BATCH) -> list[list[T]]:
    """`items` in order, in lists of `size` at most (none for no items)."""
    if not 0 < size <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} events")
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def batch_keys(key: str | None, batches: int) -> list[str | None]:
    """The Idempotency-Key of each of `batches` batches of one publish."""
    if key is None or batches == 0:
        return [None] * batches
    if batches == 1:
        return [key]
    keys = [f"{key}.{n}" for n in range(batches)]
    if len(keys[-1]) > MAX_KEY_LENGTH:
        raise ValueError(f"the idempotency key is too long to number {batches} batches "
                         f"(at most {MAX_KEY_LENGTH} characters with '.{batches - 1}')")
    return keys
