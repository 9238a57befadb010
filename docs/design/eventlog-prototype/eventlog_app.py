"""Prototype: an event log as a Faust table on RocksDB (rocksdict), co-partitioned
with `events` (keyed by app_id), listed newest-first by a prefix scan of the
partition's rocksdict, queries routed to the partition's owner.

Run: PYTHONPATH=/tmp/eventlog-proto/site:/tmp/eventlog-proto \
     EL_BROKER=127.0.0.1:9092 EL_PREFIX=p1. EL_PORT=6101 EL_DATADIR=/tmp/... \
     python eventlog_app.py
Env: EL_STANDBYS (table_standby_replicas, default 1), EL_INDEX=1 (also write I/T keys),
     EL_SWEEP_S (sweep interval, 0 = off), EL_RETENTION_S (default 7 days).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from datetime import datetime

import aiohttp
import faust
import msgspec
from faust.types import TP

import keys

log = logging.getLogger("eventlog")

BROKER = os.environ["EL_BROKER"]
PREFIX = os.environ.get("EL_PREFIX", "p1.")
PORT = int(os.environ.get("EL_PORT", "6101"))
PARTITIONS = int(os.environ.get("EL_PARTITIONS", "3"))
STANDBYS = int(os.environ.get("EL_STANDBYS", "1"))
INDEX = os.environ.get("EL_INDEX", "1") == "1"
SWEEP_S = float(os.environ.get("EL_SWEEP_S", "0"))
STALE_READS = os.environ.get("EL_STALE_READS", "0") == "1"
RETENTION_S = float(os.environ.get("EL_RETENTION_S", str(7 * 86400)))


class EventHead(msgspec.Struct):
    """What the log needs from an `events` record (msgspec skips `data`)."""
    id: str
    type: str
    app_id: str
    created_at: datetime


class Entry(msgspec.Struct, array_like=True):
    """An E value: where the envelope is, not the envelope."""
    partition: int
    offset: int
    type: str
    pending: int = 0
    delivered: int = 0
    failed: int = 0


head_decoder = msgspec.json.Decoder(EventHead)
entry_decoder = msgspec.msgpack.Decoder(Entry)
encode = msgspec.msgpack.encode

app = faust.App(
    f"{PREFIX}eventlog",
    broker=f"kafka://{BROKER}",
    store="rocksdb://",
    datadir=os.environ["EL_DATADIR"],
    key_serializer="raw",
    value_serializer="raw",
    processing_guarantee="at_least_once",
    topic_allow_declare=False,          # Hookbus creates every topic itself
    topic_disable_leader=True,
    table_standby_replicas=STANDBYS,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=10.0,
    broker_heartbeat_interval=3.0,
    web_enabled=True,
    web_host="127.0.0.1",
    web_port=PORT,
    canonical_url=f"http://127.0.0.1:{PORT}",
    web_in_thread=False,
    producer_linger=float(os.environ.get("EL_LINGER", "0")),
    producer_max_batch_size=int(os.environ.get("EL_BATCH", "16384")),
)

events_topic = app.topic(f"{PREFIX}events", key_type=bytes, value_type=bytes,
                         partitions=PARTITIONS)
table = app.Table(
    "log", key_type=bytes, value_type=bytes, partitions=PARTITIONS,
    recovery_buffer_size=int(os.environ.get("EL_RECOVERY_BUFFER", "1000")),
    # Small caches: memory follows the partitions held, not rocksdb's 2 GiB default.
    options={"block_cache_size": 8 << 20, "write_buffer_size": 8 << 20,
             "max_write_buffer_number": 2},
)
CHANGELOG = f"{PREFIX}eventlog-log-changelog"

COUNTS = {"written": 0}


@app.agent(events_topic)
async def log_events(stream: faust.StreamT) -> None:
    async for event in stream.events():
        msg = event.message
        try:
            head = head_decoder.decode(msg.value)
        except msgspec.DecodeError:
            continue
        if msg.key != head.app_id.encode():
            # A record not keyed by its app lives on another app's partition:
            # production would re-key it through a repartition topic.
            log.warning("event %s not keyed by its app", head.id)
            continue
        ms = int(head.created_at.timestamp() * 1000)
        ekey = keys.event_key(head.app_id, ms, head.id)
        table[ekey] = encode(Entry(msg.partition, msg.offset, head.type))
        if INDEX:
            table[keys.id_key(head.app_id, head.id)] = ekey
            table[keys.time_key(ms, ekey)] = b""
        COUNTS["written"] += 1


def _ready_for(p: int) -> bool:
    return (app.assignor.is_active(TP(CHANGELOG, p))
            and not app.rebalancing and not app.tables.recovery.in_recovery)


def scan(app_id: str, limit: int, cursor: bytes | None) -> tuple[list[dict], str | None]:
    """Newest first, from `cursor` (the last key returned, exclusive)."""
    p = keys.partition_of(app_id, PARTITIONS)
    db = table.data._db_for_partition(p)           # the partition's rocksdict.Rdict
    prefix = keys.event_prefix(app_id)
    it = db.iter()                                  # RdictIter, keys in byte order
    it.seek(cursor if cursor else prefix)
    if cursor and it.valid() and it.key() == cursor:
        it.next()
    out: list[dict] = []
    last = None
    while it.valid() and len(out) < limit:
        k = it.key()
        if not k.startswith(prefix):
            break
        ms, event_id = keys.split_event_key(k)
        e = entry_decoder.decode(it.value())
        out.append({"id": event_id, "created_ms": ms, "type": e.type,
                    "partition": e.partition, "offset": e.offset})
        last = k
        it.next()
    return out, (last.hex() if last is not None and len(out) == limit else None)


@app.page("/apps/{app_id}/events")
class Events(faust.web.View):
    async def get(self, request: faust.web.Request, app_id: str) -> faust.web.Response:
        p = keys.partition_of(app_id, PARTITIONS)
        if not _ready_for(p):
            owner = app.assignor._tps_url.get(TP(CHANGELOG, p))
            hops = int(request.headers.get("x-el-hops", "0"))
            if owner and owner != app.conf.canonical_url.human_repr() and hops < 1:
                try:
                    async with app.http_client.get(
                            f"{owner}{request.path_qs}", headers={"x-el-hops": str(hops + 1)},
                            timeout=aiohttp.ClientTimeout(total=5)) as r:
                        return self.bytes(await r.read(), content_type=r.content_type,
                                          status=r.status)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    if STALE_READS and TP(CHANGELOG, p) in app.assignor.assigned_standbys():
                        # KIP-535 style: the owner is gone, answer from our standby
                        # copy (behind by the standby's lag) until the rebalance.
                        items, nxt = scan(app_id, int(request.query.get("limit", "50")),
                                          None)
                        return self.json({"served_by": PORT, "stale": True,
                                          "partition": p, "data": items, "cursor": nxt})
                    return self.json({"error": f"owner unreachable: {exc!r}"[:200],
                                      "partition": p, "owner": owner}, status=503)
            return self.json({"error": "partition not ready", "partition": p,
                              "owner": owner}, status=503)
        limit = int(request.query.get("limit", "50"))
        cursor = bytes.fromhex(request.query["cursor"]) if "cursor" in request.query else None
        items, nxt = scan(app_id, limit, cursor)
        return self.json({"served_by": PORT, "partition": p, "data": items, "cursor": nxt})


# Faust's own interactive-query routing, for comparison: the key given to the
# router is the *app id*, not the composite table key.
@app.page("/route/{app_id}")
class RouteInfo(faust.web.View):
    async def get(self, request: faust.web.Request, app_id: str) -> faust.web.Response:
        url = app.router.key_store(table.name, app_id.encode())
        producer_p = app.producer.key_partition(CHANGELOG, app_id.encode()).partition
        return self.json({"router_url": str(url), "producer_partition": producer_p,
                          "murmur_partition": keys.partition_of(app_id, PARTITIONS),
                          "me": PORT})


@app.page("/tr/{app_id}")
class TableRouted(faust.web.View):
    @app.table_route(table=table, match_info="app_id")
    async def get(self, request: faust.web.Request, app_id: str) -> faust.web.Response:
        items, _ = scan(app_id, 3, None)
        return self.json({"served_by": PORT, "data": items})


@app.page("/state")
class State(faust.web.View):
    async def get(self, request: faust.web.Request) -> faust.web.Response:
        actives = sorted(tp.partition for tp in app.assignor.assigned_actives()
                         if tp.topic == CHANGELOG)
        standbys = sorted(tp.partition for tp in app.assignor.assigned_standbys()
                          if tp.topic == CHANGELOG)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return self.json({
            "port": PORT, "actives": actives, "standbys": standbys,
            "dbs": sorted(table.data._dbs), "rebalancing": app.rebalancing,
            "in_recovery": app.tables.recovery.in_recovery,
            "written": COUNTS["written"], "maxrss_kib": ru.ru_maxrss,
            "cpu_s": ru.ru_utime + ru.ru_stime, "urls": app.assignor._tps_url and {
                f"{tp.topic}:{tp.partition}": u for tp, u in app.assignor._tps_url.items()
                if tp.topic == CHANGELOG},
        })


@app.page("/count")
class Count(faust.web.View):
    async def get(self, request: faust.web.Request) -> faust.web.Response:
        out = {}
        for p, db in list(table.data._dbs.items()):
            n = {"E": 0, "I": 0, "T": 0, "other": 0}
            for k in db.keys():
                n[chr(k[0]) if chr(k[0]) in n else "other"] += 1
            out[p] = n
        return self.json(out)


async def sweep_once(now_ms: int) -> int:
    """Delete entries older than the retention from every active partition: a
    tombstone to the changelog (so standbys and restores drop them too) and a
    delete in the local DB. Runs outside any stream event, so it cannot use
    `del table[k]` (Collection.partition_for_key needs current_event())."""
    cutoff = now_ms - int(RETENTION_S * 1000)
    removed = 0
    for tp in sorted(app.assignor.assigned_actives()):
        if tp.topic != CHANGELOG:
            continue
        db = table.data._db_for_partition(tp.partition)
        it = db.iter()
        it.seek(b"T")
        batch = []
        while it.valid():
            k = it.key()
            if not k.startswith(b"T") or int.from_bytes(k[1:9], "big") >= cutoff:
                break
            batch.append(k)
            it.next()
        for tk in batch:
            ekey = tk[9:]
            _, event_id = keys.split_event_key(ekey)
            n = int.from_bytes(ekey[1:3], "big")
            ikey = b"I" + ekey[1:3 + n] + event_id.encode()
            for k in (ekey, ikey, tk):
                db.delete(k)
                table.send_changelog(tp.partition, k, None,
                                     key_serializer="raw", value_serializer="raw")
            removed += 1
            if removed % 1000 == 0:
                await asyncio.sleep(0)   # let the agent and the web server run
    return removed


if SWEEP_S > 0:
    @app.timer(SWEEP_S)
    async def sweep() -> None:
        t = time.monotonic()
        n = await sweep_once(int(time.time() * 1000))
        if n:
            log.warning("sweep removed %d events in %.2fs", n, time.monotonic() - t)


if __name__ == "__main__":
    worker = faust.Worker(app, loglevel=os.environ.get("EL_LOGLEVEL", "warning"), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
