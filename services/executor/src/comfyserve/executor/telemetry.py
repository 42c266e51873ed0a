"""Prometheus metrics of one worker, on a registry the app owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from comfyserve.executor.jobs.models import JobResult

_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs = Counter(
            "executor_jobs",
            "Attempts run, by outcome (abandoned: superseded or lost).",
            ["outcome"],
            registry=registry,
        )
        self.failures = Counter(
            "executor_job_failures",
            "Failed attempts, by failure code.",
            ["code"],
            registry=registry,
        )
        self.duration = Histogram(
            "executor_job_duration_seconds",
            "Time from the grant to the final event.",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.busy = Gauge(
            "executor_busy", "1 while a job runs on this worker.", registry=registry
        )
        self.engine_restarts = Counter(
            "executor_engine_restarts",
            "Restarts of the managed ComfyUI.",
            ["reason"],
            registry=registry,
        )

    def record(self, result: JobResult) -> None:
        self.jobs.labels(result.outcome.value).inc()
        if result.failure is not None:
            self.failures.labels(result.failure.value).inc()
        if result.duration_s is not None:
            self.duration.observe(result.duration_s)
