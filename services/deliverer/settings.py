"""The deliverer's settings, read once from the environment (contract §2)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import ConfigError, Env, KafkaSettings, parse_duration, parse_list
from services.common.target_policy import TargetPolicy


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    delivery_timeout: float = 15.0
    target_policy: TargetPolicy = TargetPolicy()
    ca_bundle: str | None = None
    max_in_flight: int = 200
    max_in_flight_per_target: int = 20
    disable_after: float = 5 * 86400.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9102
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        schedule_text = env.str("RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h")
        try:
            schedule = tuple(parse_duration(item) for item in parse_list(schedule_text))
        except ConfigError as exc:
            raise ConfigError(f"HOOKBUS_RETRY_SCHEDULE: {exc}") from None
        return cls(
            kafka=KafkaSettings.from_env(env),
            retry_schedule=schedule,
            delivery_timeout=env.duration("DELIVERY_TIMEOUT", "15s"),
            target_policy=TargetPolicy(
                allow_http=env.bool("ALLOW_HTTP", False),
                allowed_private=env.cidrs("ALLOWED_PRIVATE_CIDRS"),
                forbidden_domains=env.list("FORBIDDEN_TARGET_DOMAINS"),
            ),
            ca_bundle=env.optional("CA_BUNDLE"),
            max_in_flight=env.int("MAX_IN_FLIGHT", 200),
            max_in_flight_per_target=env.int("MAX_IN_FLIGHT_PER_TARGET", 20),
            disable_after=env.duration("DISABLE_AFTER", "5d"),
            metrics_host=env.str("METRICS_HOST", "127.0.0.1"),
            metrics_port=env.int("METRICS_PORT", 9102),
            log_format=env.str("LOG_FORMAT", "json"),
        )
