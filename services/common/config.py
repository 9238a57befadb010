"""Reading `HOOKBUS_*` settings from the environment (contract §2).

Each service has one `Settings` object built by `Settings.from_env()`; this
module holds the parsing they share and the settings every service needs."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


DEFAULT_TOPIC_PREFIX = "hookbus."
DEFAULT_EVENT_LOG_RETENTION = 7 * 86400.0
MIN_EVENT_LOG_RETENTION = 3600.0


def event_log_retention_from_env(env: Env) -> float:
    """`HOOKBUS_EVENT_LOG_RETENTION` (default 7d, at least 1h): how long the
    event log keeps an event and its attempts, and so how long `events`,
    `attempts` and `eventlog.updates` keep their records (the topics are
    created with it: devtools.topics)."""
    retention = env.duration("EVENT_LOG_RETENTION", format_duration(DEFAULT_EVENT_LOG_RETENTION))
    if not retention >= MIN_EVENT_LOG_RETENTION:
        raise ConfigError(f"{PREFIX}EVENT_LOG_RETENTION: must be at least "
                          f"{format_duration(MIN_EVENT_LOG_RETENTION)}, not "
                          f"{format_duration(retention)}")
    return retention
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Where Kafka is and how a service logs in to it (contract §9). PLAINTEXT
    needs nothing else; SASL_* needs a user and password, and PLAIN (which
    sends the password itself) is refused unless over TLS; SSL and SASL_SSL
    verify the brokers against `ssl_cafile` (else the system CAs) and present
    `ssl_certfile`/`ssl_keyfile` when given (mutual TLS). The password is never
    in the repr. `services.common.kafka_clients` turns these into client options."""

    bootstrap: str
    topic_prefix: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        protocol = self.security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"{PREFIX}KAFKA_SECURITY_PROTOCOL: unknown protocol {protocol!r} "
                              f"(one of {', '.join(SECURITY_PROTOCOLS)})")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"{PREFIX}KAFKA_SASL_MECHANISM: unknown mechanism "
                                  f"{self.sasl_mechanism!r} (one of {', '.join(SASL_MECHANISMS)})")
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                  f"{PREFIX}KAFKA_SASL_USERNAME and {PREFIX}KAFKA_SASL_PASSWORD "
                                  f"(or {PREFIX}KAFKA_SASL_PASSWORD_FILE)")
            if self.sasl_mechanism == "PLAIN" and not self.uses_tls:
                # PLAIN sends the password itself; SCRAM never does.
                raise ConfigError(f"{PREFIX}KAFKA_SASL_MECHANISM=PLAIN sends the password in "
                                  f"clear over {PREFIX}KAFKA_SECURITY_PROTOCOL={protocol}: use "
                                  "SASL_SSL, or SCRAM-SHA-512")
        elif self.sasl_username or self.sasl_password:
            raise ConfigError(f"a SASL user or password is set but {PREFIX}KAFKA_SECURITY_PROTOCOL"
                              f"={protocol} does not log in (SASL_SSL or SASL_PLAINTEXT does)")
        tls_files = [name for name, value in (("SSL_CAFILE", self.ssl_cafile),
                                              ("SSL_CERTFILE", self.ssl_certfile),
                                              ("SSL_KEYFILE", self.ssl_keyfile)) if value]
        if tls_files and not self.uses_tls:
            raise ConfigError(f"{PREFIX}KAFKA_{tls_files[0]} is set but "
                              f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                              "(SSL or SASL_SSL does)")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError(f"{PREFIX}KAFKA_SSL_KEYFILE needs {PREFIX}KAFKA_SSL_CERTFILE")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Env) -> KafkaSettings:
        password = env.optional("KAFKA_SASL_PASSWORD")
        password_file = env.optional("KAFKA_SASL_PASSWORD_FILE")
        if password is not None and password_file is not None:
            raise ConfigError(f"set {PREFIX}KAFKA_SASL_PASSWORD or "
                              f"{PREFIX}KAFKA_SASL_PASSWORD_FILE, not both")
        if password_file is not None:
            password = _read_secret_file("KAFKA_SASL_PASSWORD_FILE", password_file)
        files = {name: env.optional(name)
                 for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")}
        for name, path in files.items():
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"{PREFIX}{name}: no such file: {path}")
        settings = cls(
            bootstrap=env.str("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            topic_prefix=env.str("TOPIC_PREFIX", DEFAULT_TOPIC_PREFIX),
            security_protocol=env.str("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").strip().upper(),
            sasl_mechanism=env.str("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").strip().upper(),
            sasl_username=env.optional("KAFKA_SASL_USERNAME"),
            sasl_password=password,
            ssl_cafile=files["KAFKA_SSL_CAFILE"],
            ssl_certfile=files["KAFKA_SSL_CERTFILE"],
            ssl_keyfile=files["KAFKA_SSL_KEYFILE"],
        )
        if settings.uses_tls:
            _check_tls_files(settings)
        return settings


# What a Kafka client is built from: a service's settings, or bootstrap servers
# alone (PLAINTEXT; the development tools and tests).
KafkaAccess = KafkaSettings | str


def _check_tls_files(kafka: KafkaSettings) -> None:
    """Load the CA, certificate and key once, so that a file that is not one (or
    a key that does not match its certificate) stops the service in one line,
    not as a traceback at its first connection."""
    context = ssl.create_default_context()
    name = "KAFKA_SSL_CAFILE"
    try:
        if kafka.ssl_cafile:
            context.load_verify_locations(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            name = "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE"
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{PREFIX}{name}: not usable for TLS ({reason})") from None


def _read_secret_file(name: str, path: str) -> str:
    """A secret mounted as a file (a Kubernetes Secret), without its final newline."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{PREFIX}{name}: cannot read {path}: "
                          f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
