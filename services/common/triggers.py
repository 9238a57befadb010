"""What a trigger name means: the set of canonical event types it covers.
Pure; used by ingest to validate triggers and by the router to match them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache

from schemas.event_types import EVENT_TYPES, REJECTED_TRIGGERS, WILDCARD

RESERVED_TYPES = frozenset(t.type for t in EVENT_TYPES if t.reserved)
CANONICAL_TYPES = frozenset(t.type for t in EVENT_TYPES)
# What `*` covers: every type a trigger may receive.
SUBSCRIBABLE_TYPES = CANONICAL_TYPES - RESERVED_TYPES


@cache
def _alias_table() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = defaultdict(set)
    for event_type in EVENT_TYPES:
        for alias in event_type.aliases():
            table[alias].add(event_type.type)
    return {alias: frozenset(types) for alias, types in table.items()}


def expand(trigger: str) -> frozenset[str] | None:
    """The canonical types `trigger` covers, or None when it names nothing.

    `*` is handled by callers that index it apart (it covers everything)."""
    if trigger in REJECTED_TRIGGERS:
        return None
    if trigger == WILDCARD:
        return SUBSCRIBABLE_TYPES
    if trigger.endswith(".*"):
        resource = trigger[:-1]
        covered = frozenset(t for t in SUBSCRIBABLE_TYPES if t.startswith(resource))
        return covered or None
    if trigger in SUBSCRIBABLE_TYPES:
        aliased = _alias_table().get(trigger, frozenset())
        return frozenset({trigger}) | aliased
    return _alias_table().get(trigger)


def alias_names() -> frozenset[str]:
    return frozenset(_alias_table())


def unknown_triggers(triggers: Iterable[str]) -> list[str]:
    return [t for t in triggers if expand(t) is None]


def covered_types(triggers: Iterable[str]) -> frozenset[str]:
    """The union of what every trigger covers (unknown names cover nothing)."""
    covered: set[str] = set()
    for trigger in triggers:
        covered |= expand(trigger) or frozenset()
    return frozenset(covered)
