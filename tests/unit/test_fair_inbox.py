"""The router's fair inbox: one event per app in turn, in order within an app,
bounded."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.fair_inbox import FairInbox

keys = st.sampled_from(["app_a", "app_b", "app_c", None])


def _round_robin(puts: list[tuple[str | None, int]]) -> list[int]:
    """The reference: keys in order of first appearance, one item each per round."""
    by_key: dict[str | None, list[int]] = {}
    for key, item in puts:
        by_key.setdefault(key, []).append(item)
    out: list[int] = []
    while any(by_key.values()):
        for queue in by_key.values():
            if queue:
                out.append(queue.pop(0))
    return out


async def test_a_flood_read_first_does_not_hold_up_another_app() -> None:
    inbox: FairInbox[str] = FairInbox(bound=500)
    for n in range(200):
        await inbox.put("noisy", f"noisy{n}")
    await inbox.put("quiet", "quiet0")
    taken = [inbox.get_nowait() for _ in range(3)]
    assert taken == ["noisy0", "quiet0", "noisy1"]
    assert len(inbox) == 198


@given(st.lists(keys, max_size=60))
async def test_all_put_before_taking_comes_out_round_robin(put_keys: list[str | None]) -> None:
    inbox: FairInbox[int] = FairInbox(bound=100)
    puts = list(zip(put_keys, range(len(put_keys)), strict=True))
    for key, item in puts:
        await inbox.put(key, item)
    taken = [inbox.get_nowait() for _ in range(len(puts))]
    assert taken == _round_robin(puts)
    assert inbox.empty() and inbox.keys() == 0


@given(st.lists(st.one_of(keys.map(lambda k: ("put", k)), st.just(("take", None))),
                max_size=120))
async def test_interleaved_puts_and_takes_lose_nothing_and_stay_fair(
        steps: list[tuple[str, str | None]]) -> None:
    inbox: FairInbox[tuple[str | None, int]] = FairInbox(bound=1000)
    held: dict[str | None, list[int]] = defaultdict(list)  # what each key holds, in order
    # For each key holding events: the other keys' takes since it last was
    # taken or began to hold events.
    others_taken: dict[str | None, Counter] = defaultdict(Counter)
    for n, (op, key) in enumerate(steps):
        if op == "put":
            if not held[key]:
                others_taken[key] = Counter()
            await inbox.put(key, (key, n))
            held[key].append(n)
        elif inbox.empty():
            with pytest.raises(IndexError):
                inbox.get_nowait()
        else:
            got_key, item = inbox.get_nowait()
            assert held[got_key].pop(0) == item  # in order within its key, nothing skipped
            for waiting, counts in others_taken.items():
                if waiting != got_key and held[waiting]:
                    counts[got_key] += 1
                    # Round robin: no key is taken twice while another waits.
                    assert counts[got_key] <= 1, (waiting, got_key)
            others_taken[got_key] = Counter()
        assert len(inbox) == sum(len(items) for items in held.values())
    drained = [inbox.get_nowait() for _ in range(len(inbox))]
    assert sorted(n for _, n in drained) == sorted(n for items in held.values() for n in items)


async def test_put_waits_for_room_and_get_for_an_event() -> None:
    inbox: FairInbox[int] = FairInbox(bound=2)
    await inbox.put("a", 1)
    await inbox.put("b", 2)
    third = asyncio.ensure_future(inbox.put("a", 3))
    await asyncio.sleep(0.01)
    assert not third.done() and len(inbox) == 2
    assert await inbox.get() == 1
    await asyncio.wait_for(third, 1)
    assert [inbox.get_nowait(), inbox.get_nowait()] == [2, 3]
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await inbox.put(None, 4)
    assert await asyncio.wait_for(waiting, 1) == 4


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairInbox(bound=0)
