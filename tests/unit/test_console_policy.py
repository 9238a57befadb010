"""The console's pure policy (services/ingest/portal.py): which logo URLs a
theme may use, the frame-ancestors setting, the security headers, the link."""

from __future__ import annotations

import pytest

from schemas.portal_links import Theme
from services.common.config import ConfigError, KafkaSettings
from services.ingest.portal import (
    frame_ancestors_problem,
    logo_origin,
    portal_url,
    public_url_problem,
    security_headers,
    theme_problems,
)
from services.ingest.settings import Settings
from tests.conftest import JWT_SECRET, SECRET_KEYS


@pytest.mark.parametrize(("url", "origin"), [
    ("https://cdn.example.com/logo.png", "https://cdn.example.com"),
    ("https://cdn.example.com:8443/a/b.svg?x=1", "https://cdn.example.com:8443"),
    ("http://cdn.example.com/logo.png", None),
    ("javascript:alert(1)", None),
    ("data:image/png;base64,AAAA", None),
    ("https://user:pw@cdn.example.com/l.png", None),
    ("https://cdn.example.com/l.png; script-src *", None),
    ("https://cdn.example.com'/l.png", None),
    ("https://[::1]/l.png", None),
    ("//cdn.example.com/l.png", None),
    ("https://cdn.example.com:99999/l.png", None),
    ("https://" + "a" * 2100 + ".com/", None),
    ("", None),
    (None, None),
])
def test_logo_origin(url: str | None, origin: str | None) -> None:
    assert logo_origin(url) == origin


def test_http_logos_only_when_allowed() -> None:
    assert logo_origin("http://127.0.0.1:8000/l.svg", allow_http=True) == "http://127.0.0.1:8000"


@pytest.mark.parametrize(("theme", "fields"), [
    (Theme(accent="#7c3aed", logo_url="https://x.example/l.png"), set()),
    (Theme(accent="red"), {"theme.accent"}),
    (Theme(accent="#7c3aed;}"), {"theme.accent"}),
    (Theme(logo_url="javascript:1"), {"theme.logo_url"}),
])
def test_theme_problems(theme: Theme, fields: set[str]) -> None:
    assert {p.field for p in theme_problems(theme)} == fields


@pytest.mark.parametrize(("sources", "ok"), [
    ("'none'", True), ("'self' https://dash.example.com", True),
    ("https://*.example.com:443 http://127.0.0.1:*", True),
    ("", False), ("'self'; script-src *", False), ("https://a.example,https://b", False),
])
def test_frame_ancestors(sources: str, ok: bool) -> None:
    assert (frame_ancestors_problem(sources) is None) is ok


def test_headers_allow_only_own_scripts_and_no_referrer() -> None:
    headers = security_headers("'none'", "https://cdn.example.com")
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "img-src 'self' data: https://cdn.example.com;" in policy
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_token_goes_in_the_fragment_and_the_theme_in_the_query() -> None:
    url = portal_url("https://hooks.example/", "a.b.c", Theme(accent="#112233"))
    assert url == "https://hooks.example/console?accent=%23112233#token=a.b.c"


@pytest.mark.parametrize("sources", [
    "'self'\nset-cookie: x",  # each word a source, but a newline in a header
    "'self'\r\nx-frame-options: deny",
    "'self'\thttps://a.example",
    "'self'\u00a0https://a.example",
])
def test_frame_ancestors_are_separated_by_spaces_only(sources: str) -> None:
    # The setting goes into a header as given: a line break there is no source.
    assert frame_ancestors_problem(sources) is not None


@pytest.mark.parametrize(("url", "ok"), [
    ("https://hooks.example.com", True), ("https://hooks.example.com/base/", True),
    ("http://127.0.0.1:8080", True),
    ("hooks.example.com", False), ("javascript:alert(1)//", False),
    ("https://hooks.example.com/?x=1", False), ("https://hooks.example.com/#a", False),
    ("https://u:p@hooks.example.com", False), ("https://", False),
    ("https://hooks.example.com/a b", False),
])
def test_public_url(url: str, ok: bool) -> None:
    # Portal links are this URL + /console: anything else breaks or misdirects them.
    assert (public_url_problem(url) is None) is ok


def test_settings_refuse_a_bad_public_url() -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_PUBLIC_URL"):
        Settings(kafka=KafkaSettings("127.0.0.1:1", "t."), jwt_secret=JWT_SECRET,
                 secret_keys=SECRET_KEYS, public_url="hooks.example.com")
