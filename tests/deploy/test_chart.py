"""The chart against the code: every variable it sets is a setting the service
reads, every required setting is set, and its values are checked by schema."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import opentelemetry.environment_variables
import opentelemetry.sdk.environment_variables
import pytest
from google.protobuf import descriptor_pool
from pydantic_settings import BaseSettings

from infra import chart

SERVICES = ("gateway", "auth", "workflow", "storage", "notifier", "executor")
# The OpenTelemetry SDK's own variables (OTEL_SERVICE_NAME, ...), which it reads
# for every service.
OTEL_VARIABLES = frozenset(
    value
    for module in (
        opentelemetry.environment_variables,
        opentelemetry.sdk.environment_variables,
    )
    for name, value in vars(module).items()
    if name.startswith("OTEL_") and isinstance(value, str)
)

SCENARIOS = {
    "default": chart.SCENARIOS["default"],
    "production": chart.SCENARIOS["production"],
    # A CPU pool: managed ComfyUI and no GPU, with tracing off.
    "cpu-managed": ((), ("executor.comfyui.mode=managed", "executor.gpu.count=0")),
}

Manifest = dict[str, Any]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    values, sets = SCENARIOS[request.param]
    return chart.render(values, sets)


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def service_containers(
    manifests: list[Manifest],
) -> Iterator[tuple[str, str, Manifest]]:
    """(workload, service, container) for each container that runs a service."""
    for workload, spec in pod_specs(manifests):
        for container in spec["containers"]:
            if container["name"] == "comfyui":
                continue
            assert container["name"] in SERVICES, workload
            yield workload, container["name"], container


def settings_class(service: str) -> type[BaseSettings]:
    found: type[BaseSettings] = importlib.import_module(
        f"comfyserve.{service}.settings"
    ).Settings
    return found


def variables(settings: type[BaseSettings]) -> dict[str, bool]:
    """Each variable the settings read, and whether it must be set."""
    prefix = settings.model_config.get("env_prefix", "")
    found = {}
    for name, field in settings.model_fields.items():
        alias = field.validation_alias or field.alias
        assert alias is None or isinstance(alias, str), name
        found[(alias or f"{prefix}{name}").upper()] = field.is_required()
    return found


def test_every_manifest_is_valid_kubernetes(manifests: list[Manifest]) -> None:
    assert chart.validate(manifests) == []


def unknown_variables(manifests: list[Manifest]) -> list[str]:
    return [
        f"{workload}: {env['name']}"
        for workload, service, container in service_containers(manifests)
        for env in container["env"]
        if env["name"] not in variables(settings_class(service))
        and env["name"] not in OTEL_VARIABLES
    ]


def test_every_variable_is_a_setting_the_service_reads(
    manifests: list[Manifest],
) -> None:
    assert unknown_variables(manifests) == []


def test_a_variable_no_setting_reads_is_found() -> None:
    # The schema lets any GATEWAY_* through; only the settings know the names.
    rendered = chart.render((), ("gateway.env.GATEWAY_RATE_SUBMIT_PER_HOUR=5",))
    assert unknown_variables(rendered) == [
        "comfyserve-gateway: GATEWAY_RATE_SUBMIT_PER_HOUR"
    ]


def test_every_required_setting_is_set(manifests: list[Manifest]) -> None:
    missing = []
    for workload, service, container in service_containers(manifests):
        names = {env["name"] for env in container["env"]}
        missing += [
            f"{workload}: {name}"
            for name, required in variables(settings_class(service)).items()
            if required and name not in names
        ]
    assert missing == []


def test_each_port_is_the_one_the_service_is_told_to_listen_on(
    manifests: list[Manifest],
) -> None:
    for workload, service, container in service_containers(manifests):
        env = {e["name"]: e.get("value") for e in container["env"]}
        prefix = service.upper()
        setting = {
            "grpc": f"{prefix}_GRPC_PORT",
            "metrics": f"{prefix}_METRICS_PORT",
            "http": f"{prefix}_HTTP_PORT" if service == "executor" else "GATEWAY_PORT",
        }
        for port in container.get("ports", []):
            assert env[setting[port["name"]]] == str(port["containerPort"]), workload


def test_the_comfyui_sidecar_is_reachable_only_inside_its_pod(
    manifests: list[Manifest],
) -> None:
    for _, spec in pod_specs(manifests):
        for container in spec["containers"]:
            if container["name"] == "comfyui":
                assert container["args"][:2] == ["--listen", "127.0.0.1"]
                assert "ports" not in container
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    executor = next(p for p in policies if p["metadata"]["name"].endswith("executor"))
    ports = [
        port["port"] for rule in executor["spec"]["ingress"] for port in rule["ports"]
    ]
    assert ports == ["http"]


def test_grpc_readiness_names_a_service_the_contracts_define(
    manifests: list[Manifest],
) -> None:
    for package in ("auth", "workflow", "storage", "notifier"):
        importlib.import_module(f"comfyserve.contracts.pb.{package}.v1.{package}_pb2")
    pool = descriptor_pool.Default()
    for _, _, container in service_containers(manifests):
        probe = container.get("readinessProbe", {}).get("grpc")
        if probe is not None:
            assert pool.FindServiceByName(probe["service"])


def test_every_pod_runs_as_a_non_root_user(manifests: list[Manifest]) -> None:
    for workload, spec in pod_specs(manifests):
        assert spec["securityContext"]["runAsNonRoot"] is True, workload
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    ("assignment", "field"),
    [
        ("executor.comfyui.mode=docker", "comfyui"),
        ("gateway.env.WORKFLOW_MAX_ATTEMPTS=2", "WORKFLOW_MAX_ATTEMPTS"),
        ("executor.keda.minReplicas=-1", "minReplicas"),
        ("unknownKey=1", "unknownKey"),
    ],
)
def test_the_values_schema_refuses_bad_values(assignment: str, field: str) -> None:
    with pytest.raises(chart.ChartError, match=field):
        chart.render((), (assignment,))
