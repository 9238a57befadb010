"""The subscription index: which webhooks an event goes to.

Lookups cost O(matches), not O(subscriptions): each app keeps a map from
canonical type to webhook ids, and the `*` subscribers apart so that they are
not copied into every type's set."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.event_types import WILDCARD
from services.common.triggers import SUBSCRIBABLE_TYPES, covered_types


@dataclass(slots=True)
class _AppIndex:
    by_type: dict[str, set[str]] = field(default_factory=dict)
    everything: set[str] = field(default_factory=set)


class SubscriptionIndex:
    def __init__(self) -> None:
        self._apps: dict[str, _AppIndex] = {}
        # webhook id -> (app id, covered types, wildcard), to undo an entry.
        self._entries: dict[str, tuple[str, frozenset[str], bool]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, webhook_id: str, app_id: str, triggers: list[str]) -> None:
        """Index (or re-index) an enabled webhook."""
        self.remove(webhook_id)
        wildcard = WILDCARD in triggers
        types = frozenset() if wildcard else covered_types(triggers)
        app = self._apps.setdefault(app_id, _AppIndex())
        if wildcard:
            app.everything.add(webhook_id)
        for event_type in types:
            app.by_type.setdefault(event_type, set()).add(webhook_id)
        self._entries[webhook_id] = (app_id, types, wildcard)

    def remove(self, webhook_id: str) -> None:
        entry = self._entries.pop(webhook_id, None)
        if entry is None:
            return
        app_id, types, wildcard = entry
        app = self._apps[app_id]
        app.everything.discard(webhook_id)
        for event_type in types:
            ids = app.by_type[event_type]
            ids.discard(webhook_id)
            if not ids:
                del app.by_type[event_type]
        if not app.everything and not app.by_type:
            del self._apps[app_id]

    def match(self, app_id: str, event_type: str) -> set[str]:
        """Ids of the webhooks of `app_id` whose triggers cover `event_type`."""
        app = self._apps.get(app_id)
        if app is None:
            return set()
        matched = set(app.by_type.get(event_type, ()))
        if event_type in SUBSCRIBABLE_TYPES:
            matched |= app.everything
        return matched
