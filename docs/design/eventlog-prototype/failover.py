"""Prototype 2: recovery of the event-log table after SIGKILL of a partition's owner.

python failover.py PREFIX EVENTS STANDBYS

1. creates PREFIX topics and writes EVENTS events for 200 apps (1 table entry per
   event: EL_INDEX=0), starts instance A alone, waits until it has logged them all;
2. starts B (same group), waits until the rebalance settles and B's standbys (if
   any) have caught up;
3. SIGKILLs A, then asks B every 100 ms for an app on a partition A owned, and
   reports when B answers with all of the app's events; also B's restore of A's
   partitions and its RSS;
4. restarts A with its old data dir (warm: restore from the persisted offset) and
   a C with an empty one is not started (see restore.py for the cold case).
Every process this starts is ended by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import keys

D = "/tmp/eventlog-proto"
PY = "/work/main/.venv/bin/python"
ENV = {**os.environ, "PYTHONPATH": f"{D}/site:{D}",
       "EL_BROKER": open(f"{D}/broker.addr").read().strip(), "EL_INDEX": "0", "EL_LOGLEVEL": "info"}
APPS = 200


def start(prefix: str, name: str, port: int, standbys: int) -> subprocess.Popen:
    env = {**ENV, "EL_PREFIX": prefix, "EL_PORT": str(port),
           "EL_DATADIR": f"{D}/data/{prefix}{name}", "EL_STANDBYS": str(standbys)}
    os.makedirs(f"{D}/data", exist_ok=True)
    log = open(f"{D}/run/{prefix}{name}.log", "ab")
    return subprocess.Popen([PY, f"{D}/eventlog_app.py"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def get(port: int, path: str, timeout: float = 2.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except Exception:
        return None, None


def wait_state(port: int, pred, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, body = get(port, "/state")
        if st == 200 and pred(body):
            return body
        time.sleep(0.5)
    raise TimeoutError(what)


def count_app(port: int, app_id: str) -> tuple[int | None, int | None]:
    st, body = get(port, f"/apps/{app_id}/events?limit=100000", timeout=5)
    return st, (len(body["data"]) if st == 200 else None)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(prefix: str, events: int, standbys: int) -> None:
    subprocess.run([PY, f"{D}/load.py", "topics", prefix], env=ENV, check=True)
    subprocess.run([PY, f"{D}/load.py", "events", prefix, str(events), str(APPS)],
                   env=ENV, check=True)
    procs: list[subprocess.Popen] = []
    try:
        t = time.monotonic()
        a = start(prefix, "a", 6201, standbys)
        procs.append(a)
        wait_state(6201, lambda s: s["written"] >= events, 900, "A logging")
        print(f"A logged {events} events in {time.monotonic() - t:.1f}s "
              f"(start included), RSS {rss_kib(a.pid) // 1024} MiB")

        t = time.monotonic()
        b = start(prefix, "b", 6202, standbys)
        procs.append(b)
        sb = wait_state(6202, lambda s: s["actives"] and not s["rebalancing"]
                        and not s["in_recovery"], 300, "B joining")
        sa = wait_state(6201, lambda s: not s["rebalancing"] and not s["in_recovery"]
                        and s["actives"] and len(s["actives"]) < 3, 300, "A settling")
        print(f"B joined in {time.monotonic() - t:.1f}s: A actives {sa['actives']} "
              f"standbys {sa['standbys']}; B actives {sb['actives']} standbys {sb['standbys']}")
        a_parts = sa["actives"]
        victim = next(f"app_{i}" for i in range(APPS)
                      if keys.partition_of(f"app_{i}", 3) in a_parts)
        st, n_before = count_app(6202, victim)   # forwarded to A
        print(f"{victim} (partition {keys.partition_of(victim, 3)}, owner A): "
              f"{n_before} events via B -> A, status {st}")
        time.sleep(5)  # let B's standby catch up
        b_rss0 = rss_kib(b.pid)

        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        procs.remove(a)
        t_kill = time.monotonic()
        first_err = None
        first_ok = None
        trace = []
        while True:
            t_q = time.monotonic()
            st, n = count_app(6202, victim)
            if time.monotonic() - t_kill < 4 or st != 200:
                trace.append((round(t_q - t_kill, 2), round(time.monotonic() - t_q, 2), st, n))
            if st == 200 and n == n_before and first_ok is None:
                first_ok = round(time.monotonic() - t_kill, 2)
            if st != 200 and first_err is None:
                first_err = (round(time.monotonic() - t_kill, 2), st)
            if st == 200 and n == n_before and time.monotonic() - t_kill > 0.5 \
                    and get(6202, "/state")[1]["actives"] == [0, 1, 2]:
                break
            if time.monotonic() - t_kill > 600:
                raise TimeoutError("B never took over")
            time.sleep(0.1)
        t_ok = time.monotonic() - t_kill
        sb = get(6202, "/state")[1]
        print("trace (t, took, status, n):", trace[:8], "...", trace[-5:])
        print(f"SIGKILL A -> B answers {victim} with all {n} events after {t_ok:.1f}s "
              f"(first non-200 at {first_err}, first full answer at {first_ok}s); B RSS {b_rss0 // 1024} -> "
              f"{rss_kib(b.pid) // 1024} MiB, B cpu {sb['cpu_s']:.1f}s")
        log = open(f"{D}/run/{prefix}b.log").read()
        for line in log.splitlines():
            if any(w in line for w in ("Restoring state", "Done reading", "Restore complete",
                                       "Recovery complete", "Starting standby",
                                       "Elected group leader", "(Re-)joining group",
                                       "Setting newly assigned")):
                print("  B log:", line[:170])

        # warm restart of A: its RocksDB and persisted offsets are still on disk
        t = time.monotonic()
        a2 = start(prefix, "a", 6201, standbys)
        procs.append(a2)
        wait_state(6201, lambda s: s["actives"] and not s["rebalancing"]
                   and not s["in_recovery"], 300, "A back")
        while True:
            st, n = count_app(6202, victim)
            if st == 200 and n == n_before:
                break
            time.sleep(0.1)
        print(f"A restarted warm, owns {get(6201, '/state')[1]['actives']} and queries "
              f"answer in {time.monotonic() - t:.1f}s (process start included)")
        # cold start: everything stopped, a new instance with an empty data dir
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        procs.clear()
        t = time.monotonic()
        c = start(prefix, "c", 6203, standbys)
        procs.append(c)
        wait_state(6203, lambda s: s["actives"] == [0, 1, 2] and not s["rebalancing"]
                   and not s["in_recovery"], 600, "C restore")
        st, n = count_app(6203, victim)
        print(f"C (empty data dir, alone) restored {events} entries and answers "
              f"({n} events for {victim}) in {time.monotonic() - t:.1f}s "
              f"(process start included), RSS {rss_kib(c.pid) // 1024} MiB")
        for line in open(f"{D}/run/{prefix}c.log").read().splitlines():
            if any(w in line for w in ("Restoring state", "Done reading")):
                print("  C log:", line[:150])
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
