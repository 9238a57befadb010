"""Nothing is lost when any service is SIGKILLed, the broker is killed and
restarted mid-flow, the event log's owner is SIGKILLed, or both deliverers are rolled while one endpoint is slow,
with two routers and two deliverers sharing the work. This is `make chaos` at a
size that fits CI; each scenario has a broker of its own."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from devtools.chaos import FAULTS, PATHS, scenario, slow_every

EVENTS = 300


@pytest.mark.timeout(420)
@pytest.mark.parametrize("fault", FAULTS)
async def test_every_event_reaches_every_webhook(fault: str, tmp_path: Path) -> None:
    result = await scenario(fault, EVENTS, tmp_path, settle=180)
    print(asdict(result))
    assert result.published == EVENTS
    slow = len(range(0, EVENTS, slow_every(EVENTS))) if fault == "rolling" else 0
    assert result.expected == EVENTS * len(PATHS) + slow
    assert result.delivered == result.expected, f"lost {result.lost}"
    assert result.log_lost == 0, "the event log does not show every delivery"
    if fault == "rolling":  # each deliverer drained, exited cleanly, and none crashed
        assert result.exit_codes == {"deliverer-1": 0, "deliverer-2": 0}
        assert result.restarts == {"deliverer-1": 1, "deliverer-2": 1}
