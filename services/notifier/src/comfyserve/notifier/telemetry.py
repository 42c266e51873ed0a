"""Prometheus metrics of one notifier instance, on a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from comfyserve.runtime.grpc import count_client_calls


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        count_client_calls(self.registry, "notifier")
        self.attempts = Counter(
            "notifier_delivery_attempts",
            "Delivery attempts, by outcome (succeeded, retry, dead, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "notifier_delivery_attempt_duration_seconds",
            "Time from sending a delivery to the receiver's answer.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
            registry=self.registry,
        )
        self.due = Gauge(
            "notifier_deliveries_due",
            "Pending deliveries whose next attempt is due now.",
            registry=self.registry,
        )
        self.dead = Counter(
            "notifier_deliveries_dead",
            "Deliveries that will not be attempted again.",
            registry=self.registry,
        )
        self.recorded = Counter(
            "notifier_deliveries_recorded",
            "Deliveries recorded from events, by webhook event type.",
            ["type"],
            registry=self.registry,
        )
        self.forgotten = Counter(
            "notifier_deliveries_forgotten",
            "Finished deliveries deleted by retention, with their attempts.",
            registry=self.registry,
        )
        self.consumer_errors = Counter(
            "notifier_consumer_errors",
            "Event records retried or dead-lettered, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
