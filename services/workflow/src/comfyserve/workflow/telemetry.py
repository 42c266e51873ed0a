"""Prometheus metrics, on a registry of their own built by the app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs_submitted = Counter(
            "workflow_jobs_submitted",
            "Jobs accepted by SubmitJob (replays excluded).",
            ["priority"],
            registry=self.registry,
        )
        self.job_transitions = Counter(
            "workflow_job_transitions",
            "Jobs entering a status.",
            ["status"],
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "workflow_outbox_published",
            "Outbox rows published to Kafka.",
            registry=self.registry,
        )
        self.outbox_dead = Counter(
            "workflow_outbox_dead",
            "Outbox rows that could never be sent, moved to outbox_dead.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "workflow_queue_depth",
            "Pending jobs per executor pool and priority (what scales executors).",
            ["pool", "priority"],
            registry=self.registry,
        )
        self.outbox_lag = Gauge(
            "workflow_outbox_lag_seconds",
            "Age of the oldest outbox row at the relay's last pass.",
            registry=self.registry,
        )
        self.consumer_errors = Counter(
            "workflow_consumer_errors",
            "Consumed records that failed: retried (database) or dead-lettered.",
            ["outcome"],
            registry=self.registry,
        )
        self.events_applied = Counter(
            "workflow_events_applied",
            "Executor job events by outcome (applied, duplicate, ignored, unknown).",
            ["outcome"],
            registry=self.registry,
        )
        self.ingress_commands = Counter(
            "workflow_ingress_commands",
            "Submit-requested commands by outcome (accepted, replayed, rejected); "
            "dead letters count in workflow_consumer_errors.",
            ["outcome"],
            registry=self.registry,
        )
