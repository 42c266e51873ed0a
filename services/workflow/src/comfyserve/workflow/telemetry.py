"""Prometheus metrics, on a registry of their own built by the app."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from comfyserve.runtime.grpc import count_client_calls
from comfyserve.workflow.jobs.models import JobRecord

# Seconds; a job waits from a moment to hours, runs from seconds to an hour.
_JOB_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_RELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        count_client_calls(self.registry, "workflow")
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
        self.outbox_backlog = Gauge(
            "workflow_outbox_backlog",
            "Outbox rows waiting for the relay at its last pass (counted up to 10000).",
            registry=self.registry,
        )
        self.relay_lag = Histogram(
            "workflow_outbox_relay_lag_seconds",
            "Time from an outbox row's write to its publication.",
            buckets=_RELAY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "workflow_job_queue_wait_seconds",
            "Time from a job's submission to its start (to its end if it "
            "never started), by final status.",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "workflow_job_run_duration_seconds",
            "Time from a job's start to its end, by final status (jobs that "
            "started only).",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.sweeper_actions = Counter(
            "workflow_sweeper_actions",
            "What the sweeper did, by kind (timed_out, requeued, worker_lost, "
            "cancelled, idempotency_keys_deleted, jobs_deleted, workers_deleted, "
            "pools_deleted).",
            ["kind"],
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

    def job_ended(self, job: JobRecord) -> None:
        """Observes a job that has just reached its final status."""
        outcome = job.status.value
        ended = job.completed_at or job.updated_at
        started = job.started_at
        self.queue_wait.labels(outcome).observe(
            _seconds(job.created_at, started or ended)
        )
        if started is not None:
            self.run_duration.labels(outcome).observe(_seconds(started, ended))


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)
