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


def test_readme_v1a_snippet_verifies_a_delivery() -> None:
    import re
    import time

    from services.common.secrets import generate_private_key, private_key, public_key
    from services.deliverer.signing import signature_headers

    text = README.read_text()
    snippet = re.search(r"Verifying a `v1a` delivery.*?```python\n(.*?)```", text, re.S)
    assert snippet is not None
    namespace: dict = {}
    exec(snippet[1], namespace)  # the README's own code
    new, old = generate_private_key(), generate_private_key()
    body = b'{"id":"evt_1"}'
    headers = signature_headers([private_key(new), private_key(old)], "evt_1",
                                int(time.time()), body)
    assert namespace["verify_v1a"](public_key(new), headers, body)
    assert namespace["verify_v1a"](public_key(old), headers, body)
    assert not namespace["verify_v1a"](public_key(generate_private_key()), headers, body)
    assert not namespace["verify_v1a"](public_key(new), headers, body + b" ")
