"""Records of `eventlog.updates`: what the event log (services/eventlog, issue 11)
files, keyed by app id so that each lands in the partition of the log's table
that owns the app (murmur2, as aiokafka's and Java's default partitioners).

- `Routed`: the router matched an event (to none, one or many webhooks), or
  ingest wrote a test event straight to `deliveries`. Where the envelope is
  (topic, partition, offset), never the envelope itself.
- `Filed`: an `attempts` record, re-keyed by its app by the event log's own
  re-keying agent, with where it came from (its identity: filing the same
  record twice changes nothing).

Evolution rules: new fields get defaults; a field's type never changes; a
reader older than a tag skips that record."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.attempts import Attempt


class Routed(msgspec.Struct, kw_only=True, tag="routed", omit_defaults=True):
    app_id: str
    event_id: str
    event_type: str
    created_at: datetime
    # Where the envelope is: an `events` record (which the router parsed into
    # the envelope it delivers), or a `deliveries` record (a test event: its
    # task's body is the envelope).
    source: Literal["events", "deliveries"]
    partition: int
    offset: int
    # The webhooks it was matched to (sorted; empty: none matched).
    webhook_ids: list[str] = []


class Filed(msgspec.Struct, kw_only=True, tag="filed"):
    attempt: Attempt
    # The `attempts` record's partition and offset.
    partition: int
    offset: int


Update = Routed | Filed

update_decoder = msgspec.json.Decoder(Update)
update_encoder = msgspec.json.Encoder()
