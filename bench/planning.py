"""`python -m bench.planning [--against DIR]`: what the router's `plan` costs
per record, for payloads of several shapes and sizes, in microseconds (the
least of `--repeats` runs, so that a busy machine counts less).

With `--against DIR` (another checkout, e.g. `git archive HEAD | tar -x -C
DIR`), that checkout's services/router/planning.py runs beside this one's,
alternately in this process, and the task bodies of both are compared."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import timeit
from pathlib import Path
from types import ModuleType

import msgspec

from devtools.broker import ROOT
from services.router.matching import SubscriptionIndex


def load_planning(checkout: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, checkout / "services" / "router" / "planning.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def payloads() -> dict[str, bytes]:
    def record(data: dict) -> bytes:
        return msgspec.json.encode({"id": "evt_0123456789abcdef", "type": "message.received",
                                    "app_id": "app_1", "created_at": "2026-12-06T15:00:00.123456Z",
                                    "data": data})

    def items(count: int) -> dict:
        return {"items": [{"id": f"item_{i}", "qty": i, "price": i * 1.25, "tags": ["a", "b"],
                           "ok": True} for i in range(count)]}

    return {
        "257 B (make bench's)": record({"n": 1, "text": "x" * 240}),
        "4 kB of non-ASCII text": record({"n": 1, "text": "é" * 2000}),
        "16 kB of text": record({"n": 1, "text": "x" * 16_384}),
        "64 kB of text": record({"n": 1, "text": "x" * 65_536}),
        "20 nested items": record(items(20)),
        "200 nested items": record(items(200)),
        "1000 nested items": record(items(1000)),
    }


def cost_us(module: ModuleType, value: bytes, index: SubscriptionIndex, repeats: int) -> float:
    number = 1000 if len(value) < 5000 else 100
    runs = timeit.repeat(lambda: module.plan(value, partition=0, offset=1, timestamp_ms=0,
                                             index=index), number=number, repeat=repeats)
    return min(runs) / number * 1e6


def body(module: ModuleType, value: bytes, index: SubscriptionIndex) -> bytes:
    outcome = module.plan(value, partition=0, offset=1, timestamp_ms=0, index=index)
    return msgspec.json.decode(outcome.tasks[0][1])["body"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    index = SubscriptionIndex()
    index.put("wh_1", "app_1", ["*"])
    this = load_planning(ROOT, "planning_here")
    other = load_planning(args.against, "planning_against") if args.against else None
    for name, value in payloads().items():
        mine = cost_us(this, value, index, args.repeats)
        if other is None:
            print(f"{name:24s} {len(value):6d} B: {mine:8.1f} us", flush=True)
            continue
        theirs = cost_us(other, value, index, args.repeats)
        same = body(this, value, index) == body(other, value, index)
        print(f"{name:24s} {len(value):6d} B: {theirs:8.1f} -> {mine:8.1f} us"
              f" (bodies {'identical' if same else 'DIFFER'})", flush=True)


if __name__ == "__main__":
    main()
