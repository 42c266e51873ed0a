from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode, format_trace_id
from prometheus_client import CollectorRegistry

from comfyserve.executor.engine.events import (
    ExecutionFailed,
    ExecutionSucceeded,
    NodeExecuted,
    NodeStarted,
)
from comfyserve.executor.telemetry import Metrics, NodeSpans, job_context

GRAPH = {"1": "CheckpointLoaderSimple", "2": "KSampler", "3": "SaveImage"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _spans() -> tuple[NodeSpans, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return NodeSpans(GRAPH.get, provider.get_tracer("test")), exporter, provider


def test_a_span_per_node_with_its_class_type() -> None:
    nodes, exporter, _ = _spans()
    for event in (
        NodeStarted("p", "1"),
        NodeStarted("p", "2"),
        NodeStarted("p", "3"),
        NodeExecuted("p", "3", ()),
    ):
        nodes.observe(event)

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "comfyui.node CheckpointLoaderSimple",
        "comfyui.node KSampler",
        "comfyui.node SaveImage",
    ]
    assert [(s.attributes or {})["comfyui.node.class_type"] for s in spans] == list(
        GRAPH.values()
    )
    nodes.observe(ExecutionSucceeded("p", {}))
    assert len(exporter.get_finished_spans()) == 3


def test_the_failed_node_is_an_error_and_a_stopped_run_ends_its_node() -> None:
    nodes, exporter, _ = _spans()
    nodes.observe(NodeStarted("p", "2"))
    nodes.observe(ExecutionFailed("p", "2", "KSampler", "out of memory", "OOM"))
    nodes.observe(NodeStarted("p", "3"))
    nodes.close()

    failed, stopped = exporter.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "out of memory"
    assert stopped.name == "comfyui.node SaveImage"


def test_nodes_join_the_trace_of_the_assignment() -> None:
    nodes, exporter, provider = _spans()
    tracer = provider.get_tracer("test")
    parent = job_context(f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    with tracer.start_as_current_span("executor.job.run", context=parent):
        nodes.observe(NodeStarted("p", "1"))
        nodes.close()

    node, run = exporter.get_finished_spans()
    assert {format_trace_id(s.context.trace_id) for s in (node, run)} == {TRACE_ID}
    assert node.parent is not None
    assert node.parent.span_id == run.context.span_id


def test_node_times_by_class_type_and_loader_nodes_as_model_loads() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    nodes = NodeSpans(GRAPH.get, TracerProvider().get_tracer("test"), metrics)
    for event in (
        NodeStarted("p", "1"),
        NodeStarted("p", "2"),
        NodeStarted("p", "3"),
        NodeExecuted("p", "3", ()),
    ):
        nodes.observe(event)

    def count(name: str, class_type: str) -> float | None:
        return registry.get_sample_value(f"{name}_count", {"class_type": class_type})

    for class_type in GRAPH.values():
        assert count("executor_node_duration_seconds", class_type) == 1
    assert count("executor_model_load_seconds", "CheckpointLoaderSimple") == 1
    assert count("executor_model_load_seconds", "KSampler") is None


def test_a_failed_or_stopped_node_is_not_timed() -> None:
    registry = CollectorRegistry()
    nodes = NodeSpans(GRAPH.get, TracerProvider().get_tracer("test"), Metrics(registry))
    nodes.observe(NodeStarted("p", "2"))
    nodes.observe(ExecutionFailed("p", "2", "KSampler", "out of memory", "OOM"))
    nodes.observe(NodeStarted("p", "3"))
    nodes.close()

    assert (
        registry.get_sample_value(
            "executor_node_duration_seconds_count", {"class_type": "KSampler"}
        )
        is None
    )
    assert (
        registry.get_sample_value(
            "executor_node_duration_seconds_count", {"class_type": "SaveImage"}
        )
        is None
    )


def test_gpu_memory_from_system_stats_and_nothing_for_a_cpu() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.gpu_memory(
        {
            "devices": [
                {
                    "name": "cpu",
                    "type": "cpu",
                    "index": None,
                    "vram_total": 64,
                    "vram_free": 32,
                },
                {
                    "name": "cuda:0 H200",
                    "type": "cuda",
                    "index": 0,
                    "vram_total": 100,
                    "vram_free": 40,
                },
            ]
        }
    )

    assert (
        registry.get_sample_value("executor_gpu_memory_used_bytes", {"device": "0"})
        == 60
    )
    assert (
        registry.get_sample_value("executor_gpu_memory_free_bytes", {"device": "0"})
        == 40
    )
    devices = {
        sample.labels["device"]
        for family in registry.collect()
        if family.name.startswith("executor_gpu_memory")
        for sample in family.samples
    }
    assert devices == {"0"}
