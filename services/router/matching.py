"""The subscription index: which webhooks an event goes to.

Lookups cost O(matches), not O(subscriptions): each app keeps a map from
canonical type to webhook ids, and the `*` subscribers apart so that they are
not copied into every type's set.

Memory follows the subscriptions (issue 13: at most 150 MB of router at
100,000): equal sets of covered types are one object, shared by every webhook
with the same triggers; an app's id is one string; and a type with a single
subscriber holds its id, not a set of one (a small set costs 216 bytes)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from schemas.event_types import WILDCARD
from services.common.triggers import SUBSCRIBABLE_TYPES, covered_types


@dataclass(slots=True)
class _AppIndex:
    # type -> the id of its one subscriber, or the set of them when more
    by_type: dict[str, str | set[str]] = field(default_factory=dict)
    everything: set[str] = field(default_factory=set)


class SubscriptionIndex:
    def __init__(self) -> None:
        self._apps: dict[str, _AppIndex] = {}
        # webhook id -> (app id, covered types, wildcard), to undo an entry.
        self._entries: dict[str, tuple[str, frozenset[str], bool]] = {}
        # Each distinct set of covered types, once (few differ: most webhooks
        # subscribe to a handful of common choices). Bounded by the entries:
        # a set no entry holds any more is dropped with its last holder.
        self._type_sets: dict[frozenset[str], frozenset[str]] = {}
        self._type_set_holders: dict[frozenset[str], int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, webhook_id: str, app_id: str, triggers: list[str]) -> None:
        """Index (or re-index) an enabled webhook."""
        self.remove(webhook_id)
        wildcard = WILDCARD in triggers
        app_id = sys.intern(app_id)
        types = self._shared(frozenset() if wildcard else covered_types(triggers))
        self._entries[webhook_id] = (app_id, types, wildcard)
        if not wildcard and not types:
            return  # triggers that cover nothing here (not ingest's: it refuses them)
        app = self._apps.setdefault(app_id, _AppIndex())
        if wildcard:
            app.everything.add(webhook_id)
        for event_type in types:
            held = app.by_type.get(event_type)
            if held is None or held == webhook_id:
                app.by_type[event_type] = webhook_id
            elif isinstance(held, str):
                app.by_type[event_type] = {held, webhook_id}
            else:
                held.add(webhook_id)

    def remove(self, webhook_id: str) -> None:
        entry = self._entries.pop(webhook_id, None)
        if entry is None:
            return
        app_id, types, wildcard = entry
        self._release(types)
        app = self._apps.get(app_id)
        if app is None:  # an entry that covers nothing has no index of its app
            return
        app.everything.discard(webhook_id)
        for event_type in types:
            held = app.by_type[event_type]
            if isinstance(held, str):
                del app.by_type[event_type]
                continue
            held.discard(webhook_id)
            if len(held) == 1:
                app.by_type[event_type] = next(iter(held))
        if not app.everything and not app.by_type:
            del self._apps[app_id]

    def match(self, app_id: str, event_type: str) -> set[str]:
        """Ids of the webhooks of `app_id` whose triggers cover `event_type`."""
        app = self._apps.get(app_id)
        if app is None:
            return set()
        held = app.by_type.get(event_type, ())
        matched = {held} if isinstance(held, str) else set(held)
        if event_type in SUBSCRIBABLE_TYPES:
            matched |= app.everything
        return matched

    def _shared(self, types: frozenset[str]) -> frozenset[str]:
        shared = self._type_sets.setdefault(types, types)
        self._type_set_holders[shared] = self._type_set_holders.get(shared, 0) + 1
        return shared

    def _release(self, types: frozenset[str]) -> None:
        left = self._type_set_holders[types] - 1
        if left:
            self._type_set_holders[types] = left
        else:
            del self._type_set_holders[types]
            del self._type_sets[types]
