"""The subscription index agrees with a naive scan of every webhook's triggers."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from schemas.event_types import EVENT_TYPES
from services.common.triggers import CANONICAL_TYPES, SUBSCRIBABLE_TYPES, expand
from services.router.matching import SubscriptionIndex

ALIASES = sorted({a for t in EVENT_TYPES for a in t.aliases()})
RESOURCE_WILDCARDS = sorted({t.split(".")[0] + ".*" for t in SUBSCRIBABLE_TYPES})
TRIGGERS = sorted(SUBSCRIBABLE_TYPES) + ALIASES + RESOURCE_WILDCARDS + ["*"]
APPS = ["app_a", "app_b", "app_c"]


def naive_match(webhooks: dict[str, tuple[str, list[str]]], app_id: str, event_type: str) -> set[str]:
    return {
        webhook_id for webhook_id, (app, triggers) in webhooks.items()
        if app == app_id and any(event_type in (expand(t) or ()) for t in triggers)
    }


subscriptions = st.dictionaries(
    keys=st.text("abcdef0123", min_size=1, max_size=6).map(lambda s: "wh_" + s),
    values=st.tuples(st.sampled_from(APPS), st.lists(st.sampled_from(TRIGGERS), min_size=1,
                                                     max_size=4)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(subscriptions, st.sampled_from(APPS), st.sampled_from(sorted(SUBSCRIBABLE_TYPES)))
def test_index_agrees_with_naive_scan(webhooks, app_id, event_type) -> None:
    index = SubscriptionIndex()
    for webhook_id, (app, triggers) in webhooks.items():
        index.put(webhook_id, app, triggers)
    assert index.match(app_id, event_type) == naive_match(webhooks, app_id, event_type)


@settings(max_examples=200, deadline=None)
@given(subscriptions, subscriptions, st.sampled_from(APPS),
       st.sampled_from(sorted(SUBSCRIBABLE_TYPES)))
def test_updates_and_removals_leave_the_same_index_as_a_fresh_build(
    first, second, app_id, event_type
) -> None:
    index = SubscriptionIndex()
    for webhook_id, (app, triggers) in first.items():
        index.put(webhook_id, app, triggers)
    for webhook_id in first.keys() - second.keys():
        index.remove(webhook_id)
    for webhook_id, (app, triggers) in second.items():
        index.put(webhook_id, app, triggers)
    assert len(index) == len(second)
    assert index.match(app_id, event_type) == naive_match(second, app_id, event_type)


def test_removing_everything_leaves_no_app_behind() -> None:
    index = SubscriptionIndex()
    index.put("wh_1", "app_a", ["*"])
    index.put("wh_2", "app_a", ["message"])
    index.remove("wh_1")
    index.remove("wh_2")
    index.remove("wh_never")
    assert len(index) == 0
    assert index._apps == {}
    assert index._type_sets == {} and index._type_set_holders == {}


def test_webhooks_with_the_same_triggers_share_one_set_of_types() -> None:
    """Memory (issue 13): 100,000 webhooks hold a few distinct sets of types,
    not one each; a set is dropped with its last holder."""
    index = SubscriptionIndex()
    for n in range(50):
        index.put(f"wh_{n}", f"app_{n % 5}", ["message", "conversation.read"])
    index.put("wh_other", "app_0", ["message.received"])
    held = {id(types) for _, types, _ in index._entries.values()}
    assert len(held) == 2
    assert index._type_set_holders[index._entries["wh_0"][1]] == 50
    index.remove("wh_other")
    assert len(index._type_sets) == 1
    index.put("wh_0", "app_0", ["message.received"])  # re-indexed with other triggers
    assert index._type_set_holders[index._entries["wh_1"][1]] == 49
    assert index.match("app_0", "message.received") == {f"wh_{n}" for n in range(0, 50, 5)}


def test_reserved_types_reach_no_trigger() -> None:
    index = SubscriptionIndex()
    index.put("wh_all", "app_a", ["*"])
    assert index.match("app_a", "webhook.test") == set()
    assert "webhook.test" in CANONICAL_TYPES


def test_routes_with_100000_subscriptions() -> None:
    index = SubscriptionIndex()
    for n in range(100_000):
        index.put(f"wh_{n}", f"app_{n % 1000}", [TRIGGERS[n % len(TRIGGERS)]])
    matched = index.match("app_7", "payment.succeeded")
    expected = {
        f"wh_{n}" for n in range(7, 100_000, 1000)
        if "payment.succeeded" in (expand(TRIGGERS[n % len(TRIGGERS)]) or ())
    }
    assert matched == expected
    assert len(index) == 100_000


def test_webhooks_that_cover_nothing_can_all_be_removed() -> None:
    """Triggers that cover no type (a record ingest did not validate: written by
    a newer version with a trigger this one does not know, or straight to the
    topic): two of one app, the first removed, then the second removed or
    re-put. It was a KeyError (the app's index went with the first), which the
    router's webhooks view does not survive: the router crashed, and again at
    every restart while the compacted topic held those records."""
    index = SubscriptionIndex()
    index.put("wh_1", "app_a", ["trigger.from.a.newer.version"])
    index.put("wh_2", "app_a", [])
    index.remove("wh_1")
    index.put("wh_2", "app_a", ["message"])  # re-indexed with triggers known here
    assert index.match("app_a", "message.received") == {"wh_2"}
    index.put("wh_1", "app_a", ["nothing.known"])
    index.remove("wh_2")
    index.remove("wh_1")
    assert len(index) == 0 and index._apps == {}
    assert index._type_sets == {} and index._type_set_holders == {}


IDS = [f"wh_{n}" for n in range(6)]


class IndexAgainstANaiveScan(RuleBasedStateMachine):
    """Any sequence of puts (new, repeated, moved to another app, other
    triggers, triggers covering nothing) and removes (known or not) leaves an
    index that matches as a naive scan does, with shared type sets counted
    exactly by their holders."""

    def __init__(self) -> None:
        super().__init__()
        self.index = SubscriptionIndex()
        self.model: dict[str, tuple[str, list[str]]] = {}

    @rule(webhook_id=st.sampled_from(IDS), app=st.sampled_from(APPS),
          triggers=st.lists(st.sampled_from(TRIGGERS + ["unknown.trigger"]), max_size=4))
    def put(self, webhook_id: str, app: str, triggers: list[str]) -> None:
        app = "".join(list(app))  # a string of its own, not the interned literal
        self.index.put(webhook_id, app, triggers)
        self.model[webhook_id] = (app, list(triggers))

    @rule(webhook_id=st.sampled_from([*IDS, "wh_unknown"]))
    def remove(self, webhook_id: str) -> None:
        self.index.remove(webhook_id)
        self.model.pop(webhook_id, None)

    @invariant()
    def matches_as_a_naive_scan(self) -> None:
        assert len(self.index) == len(self.model)
        for app_id in [*APPS, "app_none"]:
            for event_type in sorted(CANONICAL_TYPES):
                assert self.index.match(app_id, event_type) == \
                    naive_match(self.model, app_id, event_type)

    @invariant()
    def type_sets_are_counted_by_their_holders(self) -> None:
        index = self.index
        held = Counter(types for _, types, _ in index._entries.values())
        assert index._type_set_holders == dict(held)
        assert index._type_sets.keys() == index._type_set_holders.keys()
        for _, types, _ in index._entries.values():
            assert index._type_sets[types] is types
        for app in index._apps.values():
            assert app.everything or app.by_type
            assert all(isinstance(held, str) or len(held) > 1 for held in app.by_type.values())


TestIndexAgainstANaiveScan = IndexAgainstANaiveScan.TestCase
TestIndexAgainstANaiveScan.settings = settings(max_examples=300, stateful_step_count=40,
                                               deadline=None)
