"""`python -m bench.profile`: where each hop spends its time.

Runs `make bench`'s burst (after its warm-up) with ingest, router and deliverer
under pyinstrument, stops them with SIGTERM (they exit cleanly, so the profiler
writes its report), and leaves the reports in bench/results/profile/, with each
process's CPU seconds over the burst (the broker's JVM and the event log
included) in cpu.json."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from bench.run import RESULTS, Bench, CountingReceivers, main_scenario
from devtools.broker import Broker, free_port


async def main(events: int = 5000) -> None:
    out = RESULTS / "profile"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hookbus-profile-") as tmp:
        broker = Broker(Path(tmp) / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        receiver = CountingReceivers()
        await receiver.start()
        try:
            figures = await main_scenario(Bench(broker, Path(tmp), profile_to=out), receiver,
                                          1, events, 500, 5.0, burst_only=True)
        finally:
            await receiver.stop()
            await asyncio.to_thread(broker.stop)
    cpu = {name: round(seconds, 2) for name, seconds in figures["burst_cpu_s_by_process"].items()}
    (out / "cpu.json").write_text(json.dumps({"events": events, **figures}, indent=2) + "\n")
    print(f"{events} events at {figures['burst_per_s']:.0f}/s under the profiler; CPU s {cpu}")
    print(f"reports: {out}/ingest.txt, router.txt, deliverer.txt")


if __name__ == "__main__":
    asyncio.run(main())
