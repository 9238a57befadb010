"""`Idempotency-Key` on publish. Pure: the caller passes the time, and does the I/O.

A key is remembered for its TTL (`HOOKBUS_IDEMPOTENCY_TTL`, 24 h by default),
counted from its first use:

- Within the TTL, a retry answers the ids of the first request and writes
  nothing. Every replica knows every key: the `idempotency` topic holds one
  record per key used (written after the events it names are acknowledged),
  and each replica follows the whole topic into `IdempotencyKeys`, a bounded
  map that forgets expired keys.
- A key that no replica knows yet gets ids derived from (app, key, window),
  where window = floor(now / TTL): two replicas racing on a fresh key compute
  the same ids, and a key reused after its TTL lands in a later window, so it
  gets new ids (receivers would drop an old id as a duplicate).

Known costs: every replica holds every key used in the last TTL across the
system (issue 11's partitioned state would own them instead); a retry that
crosses a window boundary before any replica has seen the first request's
record (the first replica died between the event and the record) gets new ids.
Single events and batches have separate key spaces."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from schemas.idempotency import IdempotencyRecord, idempotency_decoder

log = logging.getLogger(__name__)

DEFAULT_TTL = 24 * 3600.0
MAX_KEY_LENGTH = 255
MAX_KEYS = 500_000  # about 170 MB per replica when full

_encoder = msgspec.json.Encoder()


def window_of(now: float, ttl: float) -> int:
    """The TTL-long window that `now` (Unix seconds) falls in."""
    return int(now // ttl)


def _digest(*parts: object) -> str:
    # A JSON array: unambiguous whatever the app id and key hold.
    return hashlib.sha256(_encoder.encode(parts)).hexdigest()


def record_key(app_id: str, key: str, *, batch: bool = False) -> str:
    """The `idempotency` topic's key (and the map's) for `key` of `app_id`."""
    return _digest("batch" if batch else "event", app_id, key)


def event_id_for(app_id: str, key: str, window: int) -> str:
    """The id of a single event published under `key` in `window`."""
    return f"evt_{_digest('event', app_id, key, window)[:32]}"


def batch_event_id(app_id: str, key: str, window: int, index: int) -> str:
    """The id of the `index`th event of a batch published under `key` in `window`."""
    return f"evt_{_digest('batch', app_id, key, window, index)[:32]}"


class Known(msgspec.Struct, gc=False):
    """What the map keeps of a key's record (in memory only: a few hundred
    bytes a key, the digest and the dict's share included)."""

    event_id: str
    expiry: float  # Unix seconds
    window: int
    count: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What a request with a key does: answer `known` and write nothing, or
    write under `window` and then `record` it."""

    digest: str
    window: int
    known: Known | None

    def record(self, event_id: str, count: int, now: float, ttl: float) -> IdempotencyRecord:
        # Rounded up to the millisecond: once it passed, `now` is in a later window.
        expires_at = datetime.fromtimestamp(math.ceil((now + ttl) * 1000) / 1000, UTC)
        return IdempotencyRecord(event_id=event_id, expires_at=expires_at, window=self.window,
                                 count=count)


class IdempotencyKeys:
    """The keys used within their TTL, by `record_key`; expired ones are
    forgotten, and beyond `max_keys` the oldest go first (a key forgotten early
    still gets the same ids within its window, but not across a boundary)."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._max_keys = max_keys
        self.evicted = 0  # keys forgotten before their TTL ended
        # sha256 digest -> what its record says, roughly oldest first.
        self._keys: OrderedDict[bytes, Known] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def claim(self, app_id: str, key: str, now: float, ttl: float, *,
              batch: bool = False) -> Claim:
        digest = record_key(app_id, key, batch=batch)
        known = self.get(digest, now)
        return Claim(digest, known.window if known else window_of(now, ttl), known)

    def get(self, digest: str, now: float) -> Known | None:
        """What the record of `digest` says, unless it expired."""
        self._forget_expired(now)
        known = self._keys.get(bytes.fromhex(digest))
        return known if known is not None and known.expiry > now else None

    def put(self, digest: str, record: IdempotencyRecord, now: float) -> None:
        expiry = record.expires_at.timestamp()
        if expiry <= now:
            return
        key = bytes.fromhex(digest)
        self._keys[key] = Known(record.event_id, expiry, record.window, record.count)
        self._keys.move_to_end(key)
        self._forget_expired(now)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
            self.evicted += 1
            if self.evicted % 100_000 == 1:
                log.warning("more than %d idempotency keys within their TTL: forgot %d early",
                            self._max_keys, self.evicted)

    def apply(self, key: bytes | None, value: bytes | None, now: float) -> None:
        """One record of the `idempotency` topic, as followed."""
        try:
            digest = bytes.fromhex((key or b"").decode()).hex()
        except ValueError:
            digest = ""
        if len(digest) != 64:
            log.error("skipping an idempotency record with a bad key %r", key)
            return
        if value is None:
            self._keys.pop(bytes.fromhex(digest), None)
            return
        try:
            record = idempotency_decoder.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # (invalid UTF-8)
            log.error("skipping an undecodable idempotency record (key %r): %s", key, exc)
            return
        self.put(digest, record, now)

    def _forget_expired(self, now: float) -> None:
        while self._keys:
            oldest = next(iter(self._keys.values()))
            if oldest.expiry > now:
                return
            self._keys.popitem(last=False)
