"""The dashboard, the alert rules and the executors' autoscaling query name
only metrics the services really export: the names come from the services'
own Prometheus registries, built here as each service builds them."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from comfyserve.runtime.grpc import serve_grpc
from infra import chart

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "overview.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
# Where each service defines its collectors, and the class that builds them.
TELEMETRY = {
    "services/gateway/src/comfyserve/gateway/metrics.py": "HttpMetrics",
    "services/auth/src/comfyserve/auth/telemetry.py": "Metrics",
    "services/workflow/src/comfyserve/workflow/telemetry.py": "Metrics",
    "services/storage/src/comfyserve/storage/telemetry.py": "Metrics",
    "services/executor/src/comfyserve/executor/telemetry.py": "Metrics",
    "services/notifier/src/comfyserve/notifier/telemetry.py": "Metrics",
}
# The runtime's gRPC server builds its call metrics under the prefix each
# service passes it.
GRPC = "libs/runtime/src/comfyserve/runtime/grpc.py"
GRPC_PREFIX = re.compile(r'metrics_prefix="([a-z_]+)"')
COLLECTOR = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(")
# The series each kind of family exposes, by suffix.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
}
# Grafana's interval variables, which PromQL does not know.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_)?interval")


def module_of(path: str) -> str:
    return path.split("/src/", 1)[1].removesuffix(".py").replace("/", ".")


def series(registry: CollectorRegistry) -> set[str]:
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in SUFFIXES[family.type]
    }


@pytest.fixture(scope="module")
async def exported() -> set[str]:
    names: set[str] = set()
    for path, class_name in TELEMETRY.items():
        metrics_class = getattr(importlib.import_module(module_of(path)), class_name)
        if "registry" in inspect.signature(metrics_class).parameters:
            registry = CollectorRegistry()
            metrics_class(registry=registry)
        else:
            registry = metrics_class().registry
        names |= series(registry)
    prefixes = {
        prefix
        for path in ROOT.glob("services/*/src/**/*.py")
        for prefix in GRPC_PREFIX.findall(path.read_text())
    }
    assert prefixes, "no service serves gRPC metrics"
    async with AsyncExitStack() as servers:
        for prefix in sorted(prefixes):
            registry = CollectorRegistry()
            await servers.enter_async_context(
                serve_grpc(
                    service=f"test.{prefix}",
                    add_servicers=lambda _: None,
                    registry=registry,
                    metrics_prefix=prefix,
                    address="127.0.0.1:0",
                    shutdown_grace_s=0,
                )
            )
            names |= series(registry)
    return names


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    def panels(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(json.loads(DASHBOARD.read_text())["panels"]):
        for target in panel.get("targets", []):
            yield f"dashboard: {panel['title']}", target["expr"]


def alert_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alert: {rule['alert']}", rule["expr"]


def autoscaling_expressions() -> Iterator[tuple[str, str]]:
    for values, sets in chart.SCENARIOS.values():
        for manifest in chart.render(values, sets):
            if manifest["kind"] == "ScaledObject":
                for trigger in manifest["spec"]["triggers"]:
                    yield "chart: executor ScaledObject", trigger["metadata"]["query"]


def metric_names(expression: str) -> list[str | None]:
    names: list[str | None] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(
        promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expression)), visit
    )
    return names


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_every_collector_is_built_here() -> None:
    """A metric defined in a module this test does not build would go unchecked."""
    defining = {
        str(path.relative_to(ROOT))
        for path in [
            *ROOT.glob("services/*/src/**/*.py"),
            *ROOT.glob("libs/*/src/**/*.py"),
        ]
        if COLLECTOR.search(path.read_text())
    }
    unbuilt = defining - {*TELEMETRY, GRPC}
    assert not unbuilt, (
        f"add these modules and their metrics class to TELEMETRY: {unbuilt}"
    )


def test_the_registries_are_read(exported: set[str]) -> None:
    assert {
        "workflow_queue_depth",
        "executor_busy",
        "gateway_http_requests_total",
        "gateway_http_request_duration_seconds_bucket",
        "workflow_grpc_requests_total",
    } <= exported


@pytest.mark.parametrize(
    "source",
    [dashboard_expressions, alert_expressions, autoscaling_expressions],
    ids=["dashboard", "alerts", "autoscaling"],
)
def test_every_expression_names_exported_metrics(
    source: Callable[[], Iterator[tuple[str, str]]], exported: set[str]
) -> None:
    checked = list(source())
    assert checked, "no expressions found"
    unknown = [
        f"{where}: {name or 'a selector without a metric name'}"
        for where, expression in checked
        for name in metric_names(expression)
        if name not in exported
    ]
    assert unknown == []


def test_a_metric_no_service_exports_is_found(exported: set[str]) -> None:
    names = metric_names('sum(rate(executor_gpu_temperature_celsius{pool="a"}[5m]))')
    assert [name for name in names if name not in exported] == [
        "executor_gpu_temperature_celsius"
    ]
