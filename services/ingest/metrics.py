"""Ingest's Prometheus metrics, on a registry of its own per app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "hookbus_ingest_events_total", "Events offered to ingest, by outcome.",
            ["outcome"], registry=self.registry,
        )
        self.request_duration = Histogram(
            "hookbus_http_request_duration_seconds", "API request duration.",
            ["route", "method", "code"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.eventlog_requests = Counter(
            "hookbus_ingest_eventlog_requests_total",
            "Requests forwarded to the event log service, by outcome: relayed (its "
            "answer), retried (once more, after a 421 or a failed connection), "
            "unavailable (a 503 of ingest's) or unrelayable (a 500: its answer was not one).",
            ["outcome"], registry=self.registry,
        )
        self.webhooks = Gauge(
            "hookbus_webhooks_loaded", "Webhooks in this instance's view.", registry=self.registry,
        )
