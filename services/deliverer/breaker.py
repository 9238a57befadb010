"""A circuit breaker per target: after `threshold` consecutive failures the
target is skipped for a cool-down that doubles each time it trips again; one
probe is let through when it ends, and every probe ends: a success closes the
breaker, a failure trips it again, and anything else (a refusal, an attempt
that never ran) releases the probe for the next task. Pure (the caller passes
the time)."""

from __future__ import annotations

from dataclasses import dataclass

from services.deliverer.outcomes import Delivered, Failed, Gone, Outcome

_MIN_SWEEP = 1024  # endpoints with a failure streak kept before the first sweep


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    probing: bool = False
    last_failure: float = 0.0


class Breakers:
    def __init__(self, threshold: int = 5, cooldown: float = 10.0, max_cooldown: float = 300.0):
        self._threshold = threshold
        self._base = cooldown
        self._max = max_cooldown
        self._states: dict[str, _State] = {}
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        return len(self._states)

    def allows(self, target: str, now: float) -> bool:
        """Whether `target` may be tried now; when its cool-down is over, the
        first caller takes the probe (and must `settle` or `release` it)."""
        state = self._states.get(target)
        if state is None or state.failures < self._threshold:
            return True
        if now < state.open_until or state.probing:
            return False
        state.probing = True  # half-open: this one attempt decides
        return True

    def is_open(self, target: str, now: float) -> bool:
        """Whether the cool-down is on (no probe is taken: a read only)."""
        return self.open_for(target, now) > 0

    def open_for(self, target: str, now: float) -> float:
        """Seconds until `target` may be tried again (0 when it may be now)."""
        state = self._states.get(target)
        if state is None or state.failures < self._threshold:
            return 0.0
        return max(0.0, state.open_until - now)

    def settle(self, target: str, outcome: Outcome, now: float) -> None:
        """What an attempt to `target` came to: success closes, a failure (410
        included) counts, anything else only ends a probe."""
        if isinstance(outcome, Delivered):
            self.succeeded(target)
        elif isinstance(outcome, Failed | Gone):
            self.failed(target, now)
        else:
            self.release(target)

    def release(self, target: str) -> None:
        """End a probe without a verdict: the next task may probe."""
        state = self._states.get(target)
        if state is not None:
            state.probing = False

    def succeeded(self, target: str) -> None:
        self._states.pop(target, None)

    def failed(self, target: str, now: float) -> None:
        state = self._states.setdefault(target, _State())
        state.failures += 1
        state.probing = False
        state.last_failure = now
        if state.failures >= self._threshold:
            state.cooldown = min(self._max, state.cooldown * 2 if state.cooldown else self._base)
            state.open_until = now + state.cooldown
        if len(self._states) > self._sweep_at:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget endpoints that have not failed for twice the longest cool-down
        (a tenant can name a new endpoint for every event): amortised, the map
        holds about what failed lately."""
        horizon = 2 * self._max
        for target, state in list(self._states.items()):
            if not state.probing and now - state.last_failure > horizon:
                del self._states[target]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._states))

    def open_count(self, now: float) -> int:
        return sum(1 for s in self._states.values()
                   if s.failures >= self._threshold and now < s.open_until)
