"""The deliverer's settings, read once from the environment (contract §2)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import ConfigError, Env, KafkaSettings, parse_duration, parse_list
from services.common.sealing import SecretKeys, keys_from_env
from services.common.target_policy import TargetPolicy
from services.deliverer.fair_queue import Limits


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    secret_keys: SecretKeys  # open webhook secrets (and seal what it writes)
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    delivery_timeout: float = 15.0
    target_policy: TargetPolicy = TargetPolicy()
    ca_bundle: str | None = None
    # Attempts under way at once: in all, to one endpoint URL, for one app.
    max_in_flight: int = 200
    max_in_flight_per_target: int = 20
    max_in_flight_per_app: int = 50
    # Tasks waiting for a slot, in memory: in all, per (app, endpoint), per app;
    # a burst of 5,000 to one endpoint fits. A task finding its queue full is deferred.
    max_queued: int = 20_000
    max_queued_per_target: int = 5_000
    max_queued_per_app: int = 10_000
    # How long a task whose webhook the deliverer does not know is deferred
    # (from its first deferral) before it is dead-lettered.
    unknown_webhook_grace: float = 60.0
    disable_after: float = 5 * 86400.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9102
    log_format: str = "json"

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "max_in_flight_per_target", "max_in_flight_per_app",
                     "max_queued", "max_queued_per_target", "max_queued_per_app"):
            if getattr(self, name) < 1:
                raise ConfigError(f"HOOKBUS_{name.upper()}: must be at least 1")
        if self.delivery_timeout <= 0:
            raise ConfigError("HOOKBUS_DELIVERY_TIMEOUT: must be positive")

    @property
    def limits(self) -> Limits:
        return Limits(
            in_flight=self.max_in_flight,
            in_flight_per_target=self.max_in_flight_per_target,
            in_flight_per_app=self.max_in_flight_per_app,
            queued=self.max_queued,
            queued_per_target=self.max_queued_per_target,
            queued_per_app=self.max_queued_per_app,
        )

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        schedule = retry_schedule_from_env(env)
        return cls(
            kafka=KafkaSettings.from_env(env),
            secret_keys=keys_from_env(env),
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
            max_in_flight_per_app=env.int("MAX_IN_FLIGHT_PER_APP", 50),
            max_queued=env.int("MAX_QUEUED", 20_000),
            max_queued_per_target=env.int("MAX_QUEUED_PER_TARGET", 5_000),
            max_queued_per_app=env.int("MAX_QUEUED_PER_APP", 10_000),
            unknown_webhook_grace=env.duration("UNKNOWN_WEBHOOK_GRACE", "60s"),
            disable_after=env.duration("DISABLE_AFTER", "5d"),
            metrics_host=env.str("METRICS_HOST", "127.0.0.1"),
            metrics_port=env.int("METRICS_PORT", 9102),
            log_format=env.str("LOG_FORMAT", "json"),
        )


def retry_schedule_from_env(env: Env) -> tuple[float, ...]:
    """`HOOKBUS_RETRY_SCHEDULE`: it names the retry tiers' topics too (devtools.topics)."""
    schedule_text = env.str("RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h")
    try:
        return tuple(parse_duration(item) for item in parse_list(schedule_text))
    except ConfigError as exc:
        raise ConfigError(f"HOOKBUS_RETRY_SCHEDULE: {exc}") from None
