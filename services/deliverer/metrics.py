"""The deliverer's Prometheus metrics (contract §8), on a registry per instance."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class DelivererMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "hookbus_deliveries", "Delivery tasks handled, by outcome: success, retry, "
            "deferred (not attempted: breaker open, queue full, webhook unknown), hop (waiting "
            "on through another retry tier), dead, dismissed, refused, dropped.",
            ["outcome"], registry=self.registry,
        )
        self.attempt_duration = Histogram(
            "hookbus_delivery_attempt_duration_seconds", "Duration of one HTTP attempt.",
            registry=self.registry, buckets=_LATENCY_BUCKETS,
        )
        self.event_to_delivery = Histogram(
            "hookbus_event_to_delivery_seconds", "From the event's created_at to its delivery.",
            registry=self.registry, buckets=_LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "hookbus_delivery_attempts_in_flight", "Delivery attempts under way.",
            registry=self.registry,
        )
        self.queued = Gauge(
            "hookbus_delivery_tasks_queued", "Delivery tasks waiting in memory for an "
            "attempt slot.", registry=self.registry,
        )
        self.breakers_open = Gauge(
            "hookbus_circuit_breakers_open", "Targets whose circuit breaker is open.",
            registry=self.registry,
        )
        self.tiers_paused = Gauge(
            "hookbus_retry_partitions_waiting", "Retry-tier partitions paused until their "
            "head record is due.", registry=self.registry,
        )

        self.consumer_lag = Gauge(
            "hookbus_consumer_lag", "Records not yet committed, per partition: on the retry "
            "tiers, the tasks waiting.", ["topic", "partition"], registry=self.registry,
        )

    def delivered(self, event_created_at: datetime) -> None:
        self.deliveries.labels("success").inc()
        if event_created_at.tzinfo is None:  # a task written by hand may lack the offset
            event_created_at = event_created_at.replace(tzinfo=UTC)
        self.event_to_delivery.observe((datetime.now(UTC) - event_created_at).total_seconds())

    def observe_state(self, in_flight: int, breakers_open: int, paused: int,
                      queued: int) -> None:
        self.in_flight.set(in_flight)
        self.breakers_open.set(breakers_open)
        self.tiers_paused.set(paused)
        self.queued.set(queued)
