"""The router's settings, read once from the environment (contract §2)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import Env, KafkaSettings


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9101
    log_format: str = "json"
    log_level: str = "INFO"
    data_dir: str = "/tmp/hookbus-router"
    # How long a write to `deliveries` or `events.dlq` may wait for Kafka's
    # acknowledgement (retries included) before the router gives up on the event
    # and exits, to route it again after its restart.
    send_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        return cls(
            kafka=KafkaSettings.from_env(env),
            metrics_host=env.str("METRICS_HOST", "127.0.0.1"),
            metrics_port=env.int("METRICS_PORT", 9101),
            log_format=env.str("LOG_FORMAT", "json"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            data_dir=env.str("ROUTER_DATA_DIR", "/tmp/hookbus-router"),
            send_timeout=env.duration("ROUTER_SEND_TIMEOUT", "60s"),
        )
