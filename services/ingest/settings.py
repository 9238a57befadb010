"""Ingest's settings, read once from the environment (contract §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import ConfigError, Env, KafkaSettings
from services.common.sealing import SecretKeys, keys_from_env
from services.common.target_policy import TargetPolicy
from services.ingest.auth import DEFAULT_MAX_LIFETIME, MIN_SECRET_BYTES
from services.ingest.eventlog_routing import BadUrl, base_url
from services.ingest.portal import frame_ancestors_problem, public_url_problem

DEFAULT_EVENTLOG_URL = "http://127.0.0.1:8090"


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    jwt_secret: str = field(repr=False)
    secret_keys: SecretKeys  # seal webhook secrets at rest
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    target_policy: TargetPolicy = TargetPolicy()
    max_webhooks_per_app: int = 10
    secret_rotation_overlap: float = 24 * 3600.0
    # How long an Idempotency-Key is remembered after its first use.
    idempotency_ttl: float = 24 * 3600.0
    # The longest a token may live (from its `iat`, or from now); `exp` is required.
    jwt_max_lifetime: float = DEFAULT_MAX_LIFETIME
    # When set, every token must name this issuer (`iss`) / this audience (`aud`).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Instances of the event log service (issue 11) to ask which of them owns
    # which partition; the API's event log routes are forwarded to the owner.
    eventlog_urls: tuple[str, ...] = (DEFAULT_EVENTLOG_URL,)
    log_format: str = "json"
    # Who may frame /console (CSP frame-ancestors sources): the platforms that
    # embed portal links. 'none' by default.
    console_frame_ancestors: str = "'none'"
    # The base URL of portal links (the request's own origin when unset).
    public_url: str | None = None

    def __post_init__(self) -> None:
        if (problem := frame_ancestors_problem(self.console_frame_ancestors)) is not None:
            raise ConfigError(f"HOOKBUS_CONSOLE_FRAME_ANCESTORS: {problem}")
        if self.public_url is not None and (
                problem := public_url_problem(self.public_url)) is not None:
            raise ConfigError(f"HOOKBUS_PUBLIC_URL: {self.public_url[:100]!r} {problem}")
        if self.idempotency_ttl <= 0:
            raise ConfigError("HOOKBUS_IDEMPOTENCY_TTL must be positive")
        if not self.eventlog_urls:
            raise ConfigError("HOOKBUS_EVENTLOG_URLS must name at least one URL")
        for url in self.eventlog_urls:
            try:
                if base_url(url) != url:
                    raise BadUrl("must not end with /")
            except BadUrl as exc:
                raise ConfigError(f"HOOKBUS_EVENTLOG_URLS: {url[:100]!r} {exc}") from None

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        secret = env.optional("JWT_SECRET")
        if secret is None:
            raise ConfigError("HOOKBUS_JWT_SECRET is required (the HS256 key of API tokens)")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"HOOKBUS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                              "(e.g. `openssl rand -base64 48`)")
        return cls(
            kafka=KafkaSettings.from_env(env),
            jwt_secret=secret,
            secret_keys=keys_from_env(env),
            http_host=env.str("HTTP_HOST", "127.0.0.1"),
            http_port=env.int("HTTP_PORT", 8080),
            target_policy=TargetPolicy(
                allow_http=env.bool("ALLOW_HTTP", False),
                allowed_private=env.cidrs("ALLOWED_PRIVATE_CIDRS"),
                forbidden_domains=env.list("FORBIDDEN_TARGET_DOMAINS"),
            ),
            max_webhooks_per_app=env.int("MAX_WEBHOOKS_PER_APP", 10),
            secret_rotation_overlap=env.duration("SECRET_ROTATION_OVERLAP", "24h"),
            idempotency_ttl=env.duration("IDEMPOTENCY_TTL", "24h"),
            jwt_max_lifetime=env.duration("JWT_MAX_LIFETIME", "24h"),
            jwt_issuer=env.optional("JWT_ISSUER"),
            jwt_audience=env.optional("JWT_AUDIENCE"),
            eventlog_urls=_eventlog_urls(env.list("EVENTLOG_URLS")),
            log_format=env.str("LOG_FORMAT", "json"),
            console_frame_ancestors=env.str("CONSOLE_FRAME_ANCESTORS", "'none'"),
            public_url=env.optional("PUBLIC_URL"),
        )


def _eventlog_urls(given: tuple[str, ...]) -> tuple[str, ...]:
    """The base URLs, without a final `/`, each once; the default when none is given."""
    urls: list[str] = []
    for text in given:
        try:
            url = base_url(text)
        except BadUrl as exc:
            raise ConfigError(f"HOOKBUS_EVENTLOG_URLS: {text[:100]!r} {exc}") from None
        if url not in urls:
            urls.append(url)
    return tuple(urls) or (DEFAULT_EVENTLOG_URL,)
