"""Nothing is lost when any service is SIGKILLed or the broker is killed and
restarted mid-flow, with two routers and two deliverers sharing the work. This
is `make chaos` at a size that fits CI; each scenario has a broker of its own."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from devtools.chaos import FAULTS, PATHS, scenario

EVENTS = 300


@pytest.mark.timeout(420)
@pytest.mark.parametrize("fault", FAULTS)
async def test_every_event_reaches_every_webhook(fault: str, tmp_path: Path) -> None:
    result = await scenario(fault, EVENTS, tmp_path, settle=180)
    print(asdict(result))
    assert result.published == EVENTS
    assert result.expected == EVENTS * len(PATHS)
    assert result.delivered == result.expected, f"lost {result.lost}"
