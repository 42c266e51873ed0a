"""Prometheus metrics of one worker, on a registry the app owns, and the
spans of its attempts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from comfyserve.contracts.headers import TRACEPARENT
from comfyserve.executor.engine.events import (
    EngineEvent,
    ExecutionFailed,
    ExecutionSucceeded,
    NodeExecuted,
    NodeStarted,
    is_terminal,
)
from comfyserve.executor.jobs.models import JobResult
from comfyserve.runtime.grpc import count_client_calls

_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_NODE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        count_client_calls(self.registry, "executor")
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
        self.node_duration = Histogram(
            "executor_node_duration_seconds",
            "Time a ComfyUI node ran (from its executing message to its end), "
            "by class type; cached nodes do not run and are not counted.",
            ["class_type"],
            buckets=_NODE_BUCKETS,
            registry=registry,
        )
        self.model_load = Histogram(
            "executor_model_load_seconds",
            "Time of a loader node (a class type with Loader in its name, such as "
            "CheckpointLoaderSimple): what loading its model took.",
            ["class_type"],
            buckets=_NODE_BUCKETS,
            registry=registry,
        )
        self.gpu_memory_used = Gauge(
            "executor_gpu_memory_used_bytes",
            "GPU memory in use, per CUDA device, as ComfyUI reports it; absent "
            "on a CPU-only worker.",
            ["device"],
            registry=registry,
        )
        self.gpu_memory_free = Gauge(
            "executor_gpu_memory_free_bytes",
            "GPU memory free, per CUDA device, as ComfyUI reports it; absent on "
            "a CPU-only worker.",
            ["device"],
            registry=registry,
        )

    def record(self, result: JobResult) -> None:
        self.jobs.labels(result.outcome.value).inc()
        if result.failure is not None:
            self.failures.labels(result.failure.value).inc()
        if result.duration_s is not None:
            self.duration.observe(result.duration_s)

    def node_ran(self, class_type: str, seconds: float) -> None:
        self.node_duration.labels(class_type).observe(seconds)
        if "Loader" in class_type:
            self.model_load.labels(class_type).observe(seconds)

    def gpu_memory(self, system_stats: Mapping[str, Any]) -> None:
        """The GPU gauges from ComfyUI's `/system_stats`; its CPU device (a
        CPU-only worker) is no GPU and sets nothing."""
        for device in system_stats.get("devices") or ():
            total, free = device.get("vram_total"), device.get("vram_free")
            if device.get("type") != "cuda" or not isinstance(total, int | float):
                continue
            if not isinstance(free, int | float):
                continue
            label = str(device.get("index", device.get("name", "0")))
            self.gpu_memory_used.labels(label).set(max(total - free, 0))
            self.gpu_memory_free.labels(label).set(free)


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
        metrics: Metrics | None = None,
    ) -> None:
        self._class_type = class_type
        self._tracer = node_tracer
        self._metrics = metrics
        self._open: _OpenNode | None = None

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
                self._open = _OpenNode(node_id, class_type, time.monotonic(), span)
            case NodeExecuted(node_id=node_id):
                if self._open is not None and self._open.node_id == node_id:
                    self._end()
            case ExecutionFailed(node_id=node_id, exception_message=message):
                if self._open is not None and self._open.node_id == node_id:
                    self._open.span.set_status(Status(StatusCode.ERROR, message))
                # A failed node's time is no measure of the node.
                self._end(timed=False)
            case _ if is_terminal(event):
                self._end(timed=isinstance(event, ExecutionSucceeded))

    def close(self) -> None:
        """Ends a node still open when the run stops without an outcome."""
        self._end(timed=False)

    def _end(self, *, timed: bool = True) -> None:
        if self._open is None:
            return
        node, self._open = self._open, None
        node.span.end()
        if timed and self._metrics is not None:
            self._metrics.node_ran(node.class_type, time.monotonic() - node.started)


@dataclass(frozen=True, slots=True)
class _OpenNode:
    node_id: str
    class_type: str
    started: float
    span: trace.Span
