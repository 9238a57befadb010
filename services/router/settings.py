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
        )
