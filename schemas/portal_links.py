"""Bodies of the console's API routes (issue 12): a portal link (an app's
console, embeddable, behind a short-lived token) and the operator's list of
apps. Request bodies forbid unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

# `#rrggbb`: the one colour form a theme takes (no names, no CSS to inject).
ACCENT_PATTERN = "^#[0-9A-Fa-f]{6}$"
MAX_LOGO_URL = 2048


class Theme(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # The console's accent colour (buttons, links, the header's rule).
    accent: Annotated[str, msgspec.Meta(pattern=ACCENT_PATTERN)] | None = None
    # An absolute https URL of the platform's logo, shown in the header (the
    # console's Content-Security-Policy lets images load from its origin only).
    logo_url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LOGO_URL)] | None = None


class PortalLinkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Seconds the link's token lives (at most HOOKBUS_JWT_MAX_LIFETIME).
    expires_in: Annotated[int, msgspec.Meta(ge=60, le=7 * 24 * 3600)] = 3600
    # A read-only token: the API answers 403 to its writes, and the console
    # offers none.
    read_only: bool = False
    theme: Theme | None = None


class PortalLink(msgspec.Struct, kw_only=True):
    # The console's URL, its token in the fragment (`#token=…`), which browsers
    # never send to a server nor put in a Referer.
    url: str
    expires_at: datetime


class AppSummary(msgspec.Struct, kw_only=True):
    app_id: str
    webhooks: int
    # Of which disabled (by their owner, or by Hookbus after failing, or a 410).
    disabled: int


class AppList(msgspec.Struct, kw_only=True):
    # The apps that have webhooks now (an app is known by its webhooks).
    apps: list[AppSummary]
