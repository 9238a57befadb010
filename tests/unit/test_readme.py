"""The README's vocabulary table says what `schemas/event_types.py` says."""

from __future__ import annotations

from pathlib import Path

from schemas.event_types import EVENT_TYPES, VOCABULARIES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_data() -> None:
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in README.read_text().splitlines() if line.startswith("| `")
    }
    for event_type in EVENT_TYPES:
        cells = [c.strip() for c in rows[event_type.type].split("|")[2:-1]]
        assert cells == [
            ", ".join(f"`{a}`" for a in getattr(event_type, v)) or "—" for v in VOCABULARIES
        ], event_type.type
