"""Where the CLI and the clients find the API and their token. Pure: the
environment is passed in.

A flag wins over the environment (`HOOKBUS_URL`, `HOOKBUS_TOKEN`,
`HOOKBUS_APP`), which wins over the defaults: `make run`'s ingest at
http://127.0.0.1:8080 and no token (calls that need one then fail with the
API's 401, which says so)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8080"


class ConfigError(ValueError):
    """A setting that cannot work; the message names it."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None
    app: str | None

    def __repr__(self) -> str:
        token = None if self.token is None else "***"
        return f"Config(url={self.url!r}, token={token!r}, app={self.app!r})"


def resolve(env: Mapping[str, str], *, url: str | None = None, token: str | None = None,
            app: str | None = None) -> Config:
    """The settings from flags (None: not given), then `env`, then defaults."""
    url = (url or env.get("HOOKBUS_URL") or DEFAULT_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"HOOKBUS_URL / --url: {url!r} is not an http(s) URL")
    token = (token or env.get("HOOKBUS_TOKEN") or "").strip() or None
    app = (app or env.get("HOOKBUS_APP") or "").strip() or None
    return Config(url=url, token=token, app=app)


def require_app(config: Config, app: str | None = None) -> str:
    """The app a command acts on: its argument, else the configured one."""
    chosen = app or config.app
    if not chosen:
        raise ConfigError("no app: pass --app or set HOOKBUS_APP")
    return chosen
