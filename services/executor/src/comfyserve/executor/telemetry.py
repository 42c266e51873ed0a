"""Prometheus metrics of one worker, on a registry the app owns, and the
spans of its attempts."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from comfyserve.contracts.headers import TRACEPARENT
from comfyserve.executor.engine.events import (
    EngineEvent,
    ExecutionFailed,
    NodeExecuted,
    NodeStarted,
    is_terminal,
)
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


# Tracing: the attempt's spans continue the trace its job's submit began.
tracer = trace.get_tracer("comfyserve.executor")


def job_context(traceparent: str | None) -> Context:
    """The trace context an assignment carries (a fresh trace without one)."""
    return propagate.extract({TRACEPARENT: traceparent} if traceparent else {})


class NodeSpans:
    """One span per ComfyUI node, from its `executing` message to its
    `executed` one (output nodes), the next node's `executing` or the end of
    the run; the class type is an attribute."""

    def __init__(
        self,
        class_type: Callable[[str], str | None],
        node_tracer: trace.Tracer = tracer,
    ) -> None:
        self._class_type = class_type
        self._tracer = node_tracer
        self._open: tuple[str, trace.Span] | None = None

    def observe(self, event: EngineEvent) -> None:
        match event:
            case NodeStarted(node_id=node_id):
                self._end()
                class_type = self._class_type(node_id) or "unknown"
                span = self._tracer.start_span(
                    f"comfyui.node {class_type}",
                    attributes={
                        "comfyui.node.id": node_id,
                        "comfyui.node.class_type": class_type,
                    },
                )
                self._open = (node_id, span)
            case NodeExecuted(node_id=node_id):
                if self._open is not None and self._open[0] == node_id:
                    self._end()
            case ExecutionFailed(node_id=node_id, exception_message=message):
                if self._open is not None and self._open[0] == node_id:
                    self._open[1].set_status(Status(StatusCode.ERROR, message))
                self._end()
            case _ if is_terminal(event):
                self._end()

    def close(self) -> None:
        """Ends a node still open when the run stops without an outcome."""
        self._end()

    def _end(self) -> None:
        if self._open is not None:
            self._open[1].end()
            self._open = None
