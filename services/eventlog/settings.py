"""The event log's settings, read once from the environment (contract §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import ConfigError, Env, KafkaSettings
from services.ingest.auth import DEFAULT_MAX_LIFETIME, MIN_SECRET_BYTES


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    jwt_secret: str = field(repr=False)
    http_host: str = "127.0.0.1"
    http_port: int = 8090
    # The URL other services reach this instance at (advertised to the group:
    # ingest forwards an app's reads to the instance that owns its partition).
    url: str = "http://127.0.0.1:8090"
    data_dir: str = "/tmp/hookbus-eventlog"
    standby_replicas: int = 1
    # How long an event, its attempts and its status can be looked up.
    retention: float = 7 * 86400.0
    # Dead letters one replay job re-enqueues per second at most.
    replay_rate: float = 100.0
    # Replay jobs running at once on one instance at most.
    max_replays: int = 8
    jwt_max_lifetime: float = DEFAULT_MAX_LIFETIME
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    log_format: str = "json"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.retention < 3600:
            raise ConfigError("HOOKBUS_EVENT_LOG_RETENTION must be at least 1h")
        if not self.replay_rate > 0:
            raise ConfigError("HOOKBUS_REPLAY_RATE must be positive")
        if not 0 <= self.standby_replicas <= 3:
            raise ConfigError("HOOKBUS_EVENTLOG_STANDBYS must be 0 to 3")

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        secret = env.optional("JWT_SECRET")
        if secret is None:
            raise ConfigError("HOOKBUS_JWT_SECRET is required (the event log checks the "
                              "tokens ingest forwards)")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"HOOKBUS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        host = env.str("EVENTLOG_HTTP_HOST", "127.0.0.1")
        port = env.int("EVENTLOG_HTTP_PORT", 8090)
        return cls(
            kafka=KafkaSettings.from_env(env),
            jwt_secret=secret,
            http_host=host,
            http_port=port,
            url=env.str("EVENTLOG_URL", f"http://{host}:{port}").rstrip("/"),
            data_dir=env.str("EVENTLOG_DATA_DIR", "/tmp/hookbus-eventlog"),
            standby_replicas=env.int("EVENTLOG_STANDBYS", 1),
            retention=env.duration("EVENT_LOG_RETENTION", "7d"),
            replay_rate=float(env.int("REPLAY_RATE", 100)),
            max_replays=env.int("MAX_REPLAYS", 8),
            jwt_max_lifetime=env.duration("JWT_MAX_LIFETIME", "24h"),
            jwt_issuer=env.optional("JWT_ISSUER"),
            jwt_audience=env.optional("JWT_AUDIENCE"),
            log_format=env.str("LOG_FORMAT", "json"),
            log_level=env.str("LOG_LEVEL", "INFO"),
        )
