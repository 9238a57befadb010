"""The alternative's write path, for comparison with the Faust agent: a bare aiokafka
consumer of PREFIX events writes the same 3 keys per event into per-partition rocksdict
WriteBatches and sends them to its own changelog topic (PREFIX raw-changelog).
python raw_ingest.py PREFIX COUNT"""
import asyncio, resource, shutil, sys, time
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
import msgspec, rocksdict
import keys
from eventlog_app_types import EventHead, Entry

BROKER = open("/tmp/eventlog-proto/broker.addr").read().strip()
dec = msgspec.json.Decoder(EventHead)
enc = msgspec.msgpack.encode


async def main(prefix, count):
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}raw-changelog", 3, 1,
                                            topic_configs={"cleanup.policy": "compact"})])
    except Exception as e:
        print("topic:", e)
    await admin.close()
    dbs = {}
    for p in range(3):
        path = f"/tmp/eventlog-proto/data/rawi-{prefix}{p}"
        shutil.rmtree(path, ignore_errors=True)
        o = rocksdict.Options(raw_mode=True)
        o.create_if_missing(True)
        dbs[p] = rocksdict.Rdict(path, options=o)
    c = AIOKafkaConsumer(bootstrap_servers=BROKER, enable_auto_commit=False,
                         max_partition_fetch_bytes=4 << 20)
    pr = AIOKafkaProducer(bootstrap_servers=BROKER, linger_ms=5, acks="all",
                          enable_idempotence=True, max_batch_size=512 * 1024)
    await c.start(); await pr.start()
    cl = f"{prefix}raw-changelog"
    t = time.monotonic(); n = 0
    try:
        tps = [TopicPartition(f"{prefix}events", p) for p in range(3)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        while n < count:
            for tp, recs in (await c.getmany(timeout_ms=500, max_records=5000)).items():
                wb = rocksdict.WriteBatch(raw_mode=True)
                futs = []
                for r in recs:
                    h = dec.decode(r.value)
                    ms = int(h.created_at.timestamp() * 1000)
                    ek = keys.event_key(h.app_id, ms, h.id)
                    for k, v in ((ek, enc(Entry(r.partition, r.offset, h.type))),
                                 (keys.id_key(h.app_id, h.id), ek),
                                 (keys.time_key(ms, ek), b"")):
                        wb.put(k, v)
                        futs.append(await pr.send(cl, v, key=k, partition=tp.partition))
                await asyncio.gather(*futs)   # changelog acknowledged before local apply
                dbs[tp.partition].write(wb)
                n += len(recs)
    finally:
        await c.stop(); await pr.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"raw ingest: {n} events (3 keys each) in {time.monotonic() - t:.1f}s, "
          f"cpu {ru.ru_utime + ru.ru_stime:.1f}s, maxrss {ru.ru_maxrss // 1024} MiB")

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
