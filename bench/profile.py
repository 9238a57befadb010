"""`python -m bench.profile`: where router and deliverer spend their time.

Runs `make bench`'s throughput scenario with router and deliverer under
pyinstrument, stops them with SIGTERM (they exit cleanly, so the profiler
writes its report), and leaves the reports in bench/results/profile/."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.run import RESULTS, Bench, throughput
from devtools.broker import Broker, free_port
from devtools.receivers import Receivers


async def main(events: int = 5000) -> None:
    out = RESULTS / "profile"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hookbus-profile-") as tmp:
        broker = Broker(Path(tmp) / "kafka", free_port(), free_port())
        await asyncio.to_thread(broker.start)
        receiver = Receivers()
        await receiver.start()
        try:
            rate = await throughput(Bench(broker, Path(tmp), profile_to=out), receiver, events)
            print(f"{events} events end to end at {rate:.0f}/s under the profiler")
        finally:
            await receiver.stop()
            broker.stop()
    print(f"reports: {out}/router.txt, {out}/deliverer.txt")


if __name__ == "__main__":
    asyncio.run(main())
