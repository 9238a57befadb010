"""Identifiers: a prefix and 128 random bits (`evt_…`, `wh_…`)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"
