from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode, format_trace_id

from comfyserve.executor.engine.events import (
    ExecutionFailed,
    ExecutionSucceeded,
    NodeExecuted,
    NodeStarted,
)
from comfyserve.executor.telemetry import NodeSpans, job_context

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
