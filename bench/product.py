"""What every benchmark shares: the product started on private ports against
the local stack, and the statistics it reports."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.runner import Ports, ServiceSet, read_stack_env, wait_until_ready

# Rate limits and quotas out of the way: benchmarks measure the path, not refusals.
UNLIMITED = {
    "gateway": {
        "GATEWAY_RATE_SUBMIT_PER_MINUTE": "10000000",
        "GATEWAY_RATE_SUBMIT_BURST": "1000000",
        "GATEWAY_RATE_READ_PER_MINUTE": "10000000",
        "GATEWAY_RATE_READ_BURST": "1000000",
    },
    "workflow": {"WORKFLOW_TENANT_MAX_QUEUED": "1000000"},
}


@dataclass(frozen=True)
class Running:
    base_url: str
    # A bootstrap key of the gateway: every scope, a tenant of its own.
    key: str
    stack: dict[str, str]
    services: ServiceSet
    # The workflow service's Postgres schema, for benchmarks that fill it.
    workflow_schema: str


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


@contextmanager
def running_product(
    extra: dict[str, dict[str, str]] | None = None,
    *,
    executor: bool = True,
) -> Iterator[Running]:
    """Every service on free ports, the executor driving the stack's own
    ComfyUI (remote mode), removed again on exit. Without `executor` it is
    stopped once ready: its node catalog stays, so submits are accepted and
    jobs just queue."""
    stack = read_stack_env()
    ports = Ports.free()
    run_id = uuid.uuid4().hex[:8]
    key = f"csk_bench_{run_id}"
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    settings: dict[str, dict[str, str]] = {
        "workflow": {
            "WORKFLOW_CONSUMER_GROUP": f"workflow-bench-{run_id}",
        },
        "executor": {
            "EXECUTOR_COMFYUI_URL": stack["COMFYUI_URL"],
        },
        # A new group would first fence every job end still in the shared
        # topic (other runs' jobs, thousands on a used machine), competing
        # with the jobs measured for the two cores.
        "storage": {"STORAGE_FIRST_START_OFFSET": "latest"},
    }
    for name, values in (extra or {}).items():
        settings[name] = {**settings.get(name, {}), **values}
    services = ServiceSet.create(
        stack, ports, [key], logs, namespace=f"_bench_{run_id}", extra=settings
    )
    services["executor"].env.pop("EXECUTOR_COMFYUI_PATH")
    services.start()
    try:
        wait_until_ready(ports, services)
        if not executor:
            services["executor"].stop()
        yield Running(
            f"http://127.0.0.1:{ports.gateway}",
            key,
            stack,
            services,
            services["workflow"].env["WORKFLOW_SCHEMA"],
        )
    finally:
        services.stop()
        services.drop_schemas()
