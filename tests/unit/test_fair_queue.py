"""Fair shares of attempt slots: caps per endpoint, per app and in all; round
robin over apps, then over an app's endpoints; bounded queues that make a burst
wait and a stalled queue defer; shedding from the biggest app."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.deliverer.fair_queue import Defer, FairQueue, Limits, Queued, Slot

T0 = 1000.0


def fill(queue: FairQueue[str], app: str, target: str, count: int, now: float = T0) -> None:
    for n in range(count):
        admission = queue.offer(app, target, f"{app}/{target}/{n}", now)
        assert admission.verdict == Queued() and admission.shed == ()


def start_all(queue: FairQueue[str], now: float = T0) -> list[Slot[str]]:
    slots = []
    while (slot := queue.next(now)) is not None:
        slots.append(slot)
    return slots


def test_the_caps_hold_per_target_per_app_and_in_all() -> None:
    queue: FairQueue[str] = FairQueue(Limits(in_flight=10, in_flight_per_target=2,
                                             in_flight_per_app=3))
    fill(queue, "a", "https://a/1", 5)
    fill(queue, "a", "https://a/2", 5)
    fill(queue, "b", "https://b/1", 5)
    fill(queue, "c", "https://shared", 5)
    fill(queue, "d", "https://shared", 5)  # another app's endpoint at the same URL
    slots = start_all(queue)
    by_app = Counter(s.app for s in slots)
    by_target = Counter(s.target for s in slots)
    assert by_app == {"a": 3, "b": 2, "c": 1, "d": 1} or by_app == {"a": 3, "b": 2, "c": 2} \
        or by_app == {"a": 3, "b": 2, "d": 2}
    assert all(n <= 2 for n in by_target.values()) and by_target["https://shared"] == 2
    assert queue.running == len(slots) == 7 and queue.queued == 25 - 7


def test_the_global_cap_holds() -> None:
    queue: FairQueue[str] = FairQueue(Limits(in_flight=4))
    for app in "abcdef":
        fill(queue, app, f"https://{app}", 3)
    assert len(start_all(queue)) == 4
    assert queue.next(T0) is None


def test_round_robin_over_apps_then_over_their_endpoints() -> None:
    queue: FairQueue[str] = FairQueue(Limits(in_flight=1))
    fill(queue, "big", "https://big/1", 4)
    fill(queue, "big", "https://big/2", 4)
    fill(queue, "small", "https://small", 2)
    order = []
    for _ in range(10):
        slot = queue.next(T0)
        assert slot is not None and queue.next(T0) is None  # one slot in all
        order.append((slot.app, slot.target[-1]))
        queue.done(slot, T0)
    assert order[:4] == [("big", "1"), ("small", "l"), ("big", "2"), ("small", "l")]
    assert order[4:] == [("big", "1"), ("big", "2")] * 3


def test_a_blocked_app_never_holds_up_another() -> None:
    """The slow app's endpoints are at their caps: every other task still starts."""
    queue: FairQueue[str] = FairQueue(Limits(in_flight=100, in_flight_per_target=2,
                                             in_flight_per_app=3))
    fill(queue, "slow", "https://slow/1", 300)
    fill(queue, "slow", "https://slow/2", 300)
    held = start_all(queue)
    assert [s.app for s in held] == ["slow"] * 3  # its app cap
    fill(queue, "quick", "https://quick", 20)
    started = []
    while (slot := queue.next(T0)) is not None:  # quick's tasks flow, 2 at a time
        started.append(slot.app)
        queue.done(slot, T0 + 0.01)
    assert started == ["quick"] * 20
    assert queue.queued_of("slow") == 597 and queue.running_of_app("slow") == 3


def full_queue(attempt_takes: float) -> tuple[FairQueue[str], float]:
    """An endpoint whose attempts took `attempt_takes`: two under way (its cap)
    and four queued (its bound), as of the returned time."""
    queue: FairQueue[str] = FairQueue(Limits(in_flight_per_target=2, queued_per_target=4))
    fill(queue, "a", "https://a", 3)
    for slot in start_all(queue):
        queue.done(slot, T0 + attempt_takes)
    now = T0 + attempt_takes
    fill(queue, "a", "https://a", 1, now)
    start_all(queue, now)
    fill(queue, "a", "https://a", 4, now)
    assert queue.queued_of("a", "https://a") == 4 and queue.running == 2
    return queue, now


def test_a_full_queue_defers_and_the_fetch_goes_on() -> None:
    """Even a healthy endpoint's full queue defers the next task (the caller reads
    on, so no app's queue stops the fetch for the others), for about as long as
    the task would have waited there; another endpoint's task is queued."""
    queue, now = full_queue(0.01)
    verdict = queue.offer("a", "https://a", "next", now).verdict
    assert isinstance(verdict, Defer) and verdict.reason == "the endpoint's queue is full"
    assert verdict.wait == pytest.approx(0.03)  # (4 / 2 + 1) x 10 ms
    assert queue.offer("a", "https://other", "elsewhere", now).verdict == Queued()


@pytest.mark.parametrize(("attempt_takes", "waited", "wait"), [
    # Expected wait: (4 queued / 2 slots + 1) x the pace, where the pace is the
    # average attempt or the age of the oldest under way, whichever is longer,
    # and at least as long as the queue's oldest task has waited.
    (0.01, 0.0, 0.03), (2.0, 0.0, 6.0), (4.0, 0.0, 12.0),
    (0.01, 3.0, 9.0),  # the attempts under way are 3s old by then: a 3s pace
])
def test_a_deferral_lasts_about_as_long_as_the_wait(attempt_takes, waited, wait):
    queue, now = full_queue(attempt_takes)
    verdict = queue.offer("a", "https://a", "x", now + waited).verdict
    assert isinstance(verdict, Defer) and verdict.wait == pytest.approx(wait)


def test_a_queue_held_back_by_its_app_cap_defers_for_as_long_as_it_waited() -> None:
    """Its endpoint is quick, but the app's cap keeps it from starting."""
    queue: FairQueue[str] = FairQueue(Limits(in_flight_per_app=1, queued_per_target=2))
    fill(queue, "a", "https://busy", 1)
    start_all(queue)  # the app's one slot
    fill(queue, "a", "https://quick", 2)
    verdict = queue.offer("a", "https://quick", "x", T0 + 10.5).verdict
    assert isinstance(verdict, Defer) and verdict.wait >= 10.5


def test_a_hanging_endpoint_shows_before_any_attempt_ends() -> None:
    queue: FairQueue[str] = FairQueue(Limits(in_flight_per_target=2, queued_per_target=4))
    fill(queue, "a", "https://hang", 4)
    start_all(queue)
    fill(queue, "a", "https://hang", 2)
    assert queue.offer("a", "https://hang", "x", T0 + 1).verdict == \
        Defer("the endpoint's queue is full", 3.0)   # (4/2 + 1) x 1s under way
    assert queue.offer("a", "https://hang", "x", T0 + 4).verdict == \
        Defer("the endpoint's queue is full", 12.0)  # (4/2 + 1) x 4s: deferred that long


def test_an_apps_queue_is_bounded_over_its_endpoints() -> None:
    queue: FairQueue[str] = FairQueue(Limits(queued_per_target=10, queued_per_app=15))
    fill(queue, "a", "https://a/1", 10)
    fill(queue, "a", "https://a/2", 5)
    verdict = queue.offer("a", "https://a/3", "x", T0 + 1).verdict
    assert isinstance(verdict, Defer) and verdict.reason == "the app's queue is full"
    assert verdict.wait >= 1  # at least as long as its oldest task waited
    assert queue.offer("b", "https://a/3", "y", T0 + 1).verdict == Queued()


def test_a_full_buffer_sheds_the_newest_task_of_the_biggest_app() -> None:
    queue: FairQueue[str] = FairQueue(Limits(queued=10))
    fill(queue, "flood", "https://flood/1", 4)
    fill(queue, "flood", "https://flood/2", 3)
    fill(queue, "other", "https://other", 3)
    admission = queue.offer("newcomer", "https://new", "n", T0 + 1)
    assert admission.verdict == Queued() and admission.shed == ("flood/https://flood/1/3",)
    assert admission.shed_wait >= 1  # the flood's oldest task waited 1s
    assert queue.queued == 10 and queue.queued_of("flood") == 6
    own = queue.offer("flood", "https://flood/2", "f", T0 + 1)  # the biggest itself
    assert isinstance(own.verdict, Defer) and own.shed == ()
    assert own.verdict.reason == "the deliverer's buffer is full"


def test_a_full_buffer_sheds_even_a_moving_burst_for_another_app() -> None:
    """No app's backlog, however healthy, keeps another app's task out."""
    queue: FairQueue[str] = FairQueue(Limits(queued=4))
    fill(queue, "burst", "https://burst", 4)
    admission = queue.offer("other", "https://other", "o", T0 + 0.1)
    assert admission.verdict == Queued() and admission.shed == ("burst/https://burst/3",)


def test_removed_tasks_leave_the_queues() -> None:
    queue: FairQueue[str] = FairQueue(Limits(in_flight=1))
    fill(queue, "a", "https://a", 3)
    fill(queue, "b", "https://b", 3)
    removed = queue.remove(lambda item: item.startswith("a/") or item.endswith("/2"))
    assert sorted(removed) == ["a/https://a/0", "a/https://a/1", "a/https://a/2",
                               "b/https://b/2"]
    assert queue.queued == 2 and sorted(queue.items()) == ["b/https://b/0", "b/https://b/1"]
    slot = queue.next(T0)
    assert slot is not None and slot.item == "b/https://b/0"


# -- a random walk, checked against a model -----------------------------------------
APPS = ["a", "b", "c"]
TARGETS = ["https://x", "https://y", "https://z"]
operations = st.lists(st.one_of(
    st.tuples(st.just("offer"), st.sampled_from(APPS), st.sampled_from(TARGETS)),
    st.tuples(st.just("next")),
    st.tuples(st.just("done"), st.integers(0, 50)),
    st.tuples(st.just("remove"), st.sampled_from(APPS)),
    st.tuples(st.just("tick"), st.floats(0, 5)),
), max_size=200)
limits = st.builds(Limits, in_flight=st.integers(1, 6), in_flight_per_target=st.integers(1, 3),
                   in_flight_per_app=st.integers(1, 4), queued=st.integers(1, 12),
                   queued_per_target=st.integers(1, 5), queued_per_app=st.integers(1, 8))


@settings(max_examples=300, deadline=None)
@given(limits, operations)
def test_no_cap_or_bound_is_ever_exceeded_and_no_task_is_lost(limits, ops) -> None:
    queue: FairQueue[tuple[str, str, int]] = FairQueue(limits)
    now, serial = T0, 0
    queued: set = set()
    running: dict[int, Slot] = {}
    out: list = []  # deferred, shed or removed: handed back to the caller
    finished = 0
    for op in ops:
        if op[0] == "offer":
            _, app, target = op
            item = (app, target, serial)
            serial += 1
            admission = queue.offer(app, target, item, now)
            for shed in admission.shed:
                assert shed[0] != app
                queued.remove(shed)
                out.append(shed)
            if isinstance(admission.verdict, Queued):
                queued.add(item)
            else:
                assert isinstance(admission.verdict, Defer)
                out.append(item)
        elif op[0] == "next":
            slot = queue.next(now)
            if slot is None:  # work-conserving: nothing queued could start
                assert not any(_may_start(queue, limits, app, target, running)
                               for app, target, _ in queued)
            else:
                queued.remove(slot.item)
                running[slot.id] = slot
        elif op[0] == "done" and running:
            key = sorted(running)[op[1] % len(running)]
            queue.done(running.pop(key), now)
            finished += 1
        elif op[0] == "remove":
            removed = queue.remove(lambda item, a=op[1]: item[0] == a)
            assert set(removed) == {i for i in queued if i[0] == op[1]}
            queued -= set(removed)
            out += removed
        elif op[0] == "tick":
            now += op[1]
        # Invariants, against the model.
        assert set(queue.items()) == queued and queue.queued == len(queued)
        assert queue.running == len(running) <= limits.in_flight
        assert len(queued) <= limits.queued
        for app in APPS:
            assert queue.running_of_app(app) == sum(s.app == app for s in running.values())
            assert queue.running_of_app(app) <= limits.in_flight_per_app
            assert queue.queued_of(app) <= limits.queued_per_app
            for target in TARGETS:
                assert queue.queued_of(app, target) <= limits.queued_per_target
        for target in TARGETS:
            assert queue.running_of_target(target) <= limits.in_flight_per_target
    assert len(queued) + len(running) + len(out) + finished == serial  # none lost, none twice


def _may_start(queue, limits: Limits, app: str, target: str, running: dict) -> bool:
    return (len(running) < limits.in_flight
            and queue.running_of_app(app) < limits.in_flight_per_app
            and queue.running_of_target(target) < limits.in_flight_per_target)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(2, 4), st.integers(1, 30))
def test_backlogged_apps_share_the_slots_equally(slots: int, apps: int, rounds: int) -> None:
    """With every app backlogged, any window of starts gives each app its turn:
    counts never differ by more than one."""
    queue: FairQueue[str] = FairQueue(Limits(in_flight=slots, queued_per_target=10**4,
                                             queued_per_app=10**4, queued=10**5))
    for n in range(apps):
        fill(queue, f"app{n}", f"https://{n}/1", rounds * slots + 1)
        fill(queue, f"app{n}", f"https://{n}/2", rounds * slots + 1)
    starts: Counter[str] = Counter()
    for _ in range(rounds):
        batch = start_all(queue)
        starts.update(s.app for s in batch)
        assert max(starts.values()) - min(starts[f"app{n}"] for n in range(apps)) <= 1
        for slot in batch:
            queue.done(slot, T0)


def test_the_documented_defaults_and_refusals() -> None:
    from services.common.config import ConfigError, Env
    from services.deliverer.settings import Settings
    from tests.conftest import SECRET_KEYS_TEXT

    keys = {"HOOKBUS_SECRET_KEYS": SECRET_KEYS_TEXT}
    limits = Settings.from_env(Env(keys)).limits
    assert limits == Limits(in_flight=200, in_flight_per_target=20, in_flight_per_app=50,
                            queued=20_000, queued_per_target=5_000, queued_per_app=10_000)
    settings = Settings.from_env(Env(keys | {"HOOKBUS_MAX_IN_FLIGHT_PER_APP": "7",
                                             "HOOKBUS_UNKNOWN_WEBHOOK_GRACE": "90s"}))
    assert (settings.limits.in_flight_per_app, settings.unknown_webhook_grace) == (7, 90.0)
    for name, value in (("HOOKBUS_MAX_IN_FLIGHT_PER_APP", "0"), ("HOOKBUS_MAX_QUEUED", "-1"),
                        ("HOOKBUS_UNKNOWN_WEBHOOK_GRACE", "soon")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env(Env(keys | {name: value}))
