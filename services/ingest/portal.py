"""The console's pure policy (issue 12): what a theme may hold, the origin a
logo may load from, the console's security headers, and a portal link's URL.
Imports nothing from aiohttp."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from schemas.api import ErrorDetail
from schemas.portal_links import ACCENT_PATTERN, MAX_LOGO_URL, Theme

_ACCENT = re.compile(ACCENT_PATTERN)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# A frame-ancestors source: a keyword, a scheme, or a host source (with `*.`,
# a port or `*`); nothing that could end the directive or start another.
_SOURCE = re.compile(r"'none'|'self'|[a-z][a-z0-9+.-]*:|"
                     r"(?:[a-z][a-z0-9+.-]*://)?(?:\*\.)?[A-Za-z0-9.-]+(?::(?:\d{1,5}|\*))?")


def logo_origin(url: str | None, *, allow_http: bool = False) -> str | None:
    """`scheme://host[:port]` of a logo URL a console may show, or None when it
    is not one: absolute https (http only when allowed), no user info, a plain
    host name or IPv4 address, at most MAX_LOGO_URL characters."""
    if not url or len(url) > MAX_LOGO_URL or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    schemes = ("https", "http") if allow_http else ("https",)
    host = parts.hostname or ""
    if parts.scheme not in schemes or "@" in parts.netloc or not _HOST.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def accent_ok(accent: str | None) -> bool:
    return accent is not None and _ACCENT.fullmatch(accent) is not None


def theme_problems(theme: Theme, *, allow_http: bool = False) -> list[ErrorDetail]:
    problems = []
    if theme.accent is not None and not accent_ok(theme.accent):
        problems.append(ErrorDetail("theme.accent", "must be a colour #rrggbb"))
    if theme.logo_url is not None and logo_origin(theme.logo_url, allow_http=allow_http) is None:
        problems.append(ErrorDetail("theme.logo_url", "must be an absolute https URL with a "
                                                      "host name and no user info"))
    return problems


def frame_ancestors_problem(sources: str) -> str | None:
    """Why HOOKBUS_CONSOLE_FRAME_ANCESTORS is not a list of CSP sources (None: it is)."""
    if not (sources.isascii() and sources.isprintable()):
        # It goes into a header as given: a line break or tab is no separator.
        return "must be sources separated by spaces, printable ASCII only"
    words = sources.split()
    if not words:
        return "must name at least one source ('none' to forbid every frame)"
    bad = [w for w in words if not _SOURCE.fullmatch(w)]
    return f"{bad[0][:100]!r} is not a CSP source" if bad else None


def public_url_problem(url: str) -> str | None:
    """Why HOOKBUS_PUBLIC_URL cannot be the base of portal links (None: it can):
    an absolute http(s) URL with a host, no user info, query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute http(s) URL with a host"
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in url or "#" in url:
        return "must hold no user info, query or fragment"
    if not (url.isascii() and url.isprintable()) or " " in url:
        return "must be printable ASCII without spaces"
    return None


def security_headers(frame_ancestors: str, logo: str | None) -> dict[str, str]:
    """What every console response carries: only its own scripts, styles and
    API calls; images from itself (and the theme's logo origin); framed only by
    the configured ancestors; never a Referer (the token stays in the page)."""
    images = "'self' data:" + (f" {logo}" if logo else "")
    policy = (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
              f"connect-src 'self'; base-uri 'none'; form-action 'none'; "
              f"frame-ancestors {frame_ancestors}")
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def portal_url(base: str, token: str, theme: Theme | None) -> str:
    """`base/console`, the theme in the query (public, checked again when the
    page is served), the token in the fragment: browsers send a fragment to no
    server and put it in no Referer."""
    query = {}
    if theme is not None and theme.accent:
        query["accent"] = theme.accent
    if theme is not None and theme.logo_url:
        query["logo"] = theme.logo_url
    return (f"{base.rstrip('/')}/console" + (f"?{urlencode(query)}" if query else "")
            + f"#token={token}")
