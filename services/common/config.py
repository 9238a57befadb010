"""Reading `HOOKBUS_*` settings from the environment (contract §2).

Each service has one `Settings` object built by `Settings.from_env()`; this
module holds the parsing they share and the settings every service needs."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

PREFIX = "HOOKBUS_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed; the service refuses to start."""


def settings_or_exit(service: str, load: Callable[[], T]) -> T:
    """The service's settings, or an exit with a one-line reason (no traceback)."""
    try:
        return load()
    except ConfigError as exc:
        raise SystemExit(f"{service}: {exc}") from None


def parse_duration(text: str) -> float:
    """Seconds in `text`, such as `500ms`, `5s`, `30m`, `2h`, `5d`."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"not a duration: {text!r} (expected e.g. 5s, 30m, 2h)")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds` (`300` -> `5m`): retry topic names."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(round(seconds * 1000))}ms"


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {text!r}")


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_cidrs(text: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in parse_list(text))
    except ValueError as exc:
        raise ConfigError(f"not a CIDR list: {text!r} ({exc})") from exc


class Env:
    """Typed access to the `HOOKBUS_` variables of an environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def str(self, name: str, default: str) -> str:
        return self._environ.get(PREFIX + name, default)

    def optional(self, name: str) -> str | None:
        return self._environ.get(PREFIX + name) or None

    def int(self, name: str, default: int) -> int:
        raw = self.str(name, str(default))
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name}: not an integer: {raw!r}") from None

    def bool(self, name: str, default: bool) -> bool:
        return self._wrap(name, parse_bool, self.str(name, str(default)))

    def duration(self, name: str, default: str) -> float:
        return self._wrap(name, parse_duration, self.str(name, default))

    def cidrs(self, name: str) -> tuple[IPNetwork, ...]:
        return self._wrap(name, parse_cidrs, self.str(name, ""))

    def list(self, name: str) -> tuple[str, ...]:
        return parse_list(self.str(name, ""))

    @staticmethod
    def _wrap(name, parse, raw):  # type: ignore[no-untyped-def]
        try:
            return parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"{PREFIX}{name}: {exc}") from None


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str
    topic_prefix: str

    @classmethod
    def from_env(cls, env: Env) -> KafkaSettings:
        return cls(
            bootstrap=env.str("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            topic_prefix=env.str("TOPIC_PREFIX", "hookbus."),
        )
