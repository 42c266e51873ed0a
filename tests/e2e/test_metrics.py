"""Each service's `/metrics` after a job: the golden signals, queue, job,
outbox and node series hold counts where the job did work, routes are
templates, and no label carries a job id."""

from __future__ import annotations

import random
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import Product, download_image, invert_graph, wait_final

pytestmark = [pytest.mark.e2e]

# Where each service serves its registry, by the setting that places it.
METRICS_PORTS = {
    "gateway": "GATEWAY_METRICS_PORT",
    "auth": "AUTH_METRICS_PORT",
    "workflow": "WORKFLOW_METRICS_PORT",
    "storage": "STORAGE_METRICS_PORT",
    "executor": "EXECUTOR_HTTP_PORT",
    "notifier": "NOTIFIER_METRICS_PORT",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Samples = list[tuple[str, dict[str, str], float]]


async def scrape(product: Product, service: str) -> Samples:
    port = product.services[service].env[METRICS_PORTS[service]]
    async with httpx.AsyncClient(timeout=10) as plain:
        response = await plain.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and labels.items() <= have.items()
    )


def named(samples: Samples, name: str) -> list[dict[str, str]]:
    return [labels for sample, labels, _ in samples if sample == name]


async def test_every_service_exports_the_series_of_the_work_it_did(
    product: Product,
) -> None:
    # A colour of its own, so ComfyUI runs every node rather than its cache.
    colour = (random.randrange(256), random.randrange(256), random.randrange(256))
    async with product.client() as client:
        accepted = await client.post(
            "/workflows/execute", json={"workflow": invert_graph(colour)}
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["execution_id"]
        job = await wait_final(client, job_id)
        assert job["status"] == "completed", job
        await download_image(job["outputs"][0]["url"])
    scraped = {service: await scrape(product, service) for service in METRICS_PORTS}

    gateway = scraped["gateway"]
    assert total(
        gateway,
        "gateway_http_requests_total",
        method="POST",
        route="/workflows/execute",
        status="2xx",
    )
    assert total(
        gateway,
        "gateway_http_requests_total",
        method="GET",
        route="/workflows/{execution_id}",
        status="2xx",
    )
    assert total(
        gateway,
        "gateway_http_request_duration_seconds_count",
        route="/workflows/execute",
    )

    workflow = scraped["workflow"]
    assert total(
        workflow, "workflow_grpc_requests_total", method="SubmitJob", code="OK"
    )
    assert total(workflow, "workflow_grpc_request_duration_seconds_count")
    assert {labels["priority"] for labels in named(workflow, "workflow_queue_depth")}
    for histogram in ("queue_wait", "run_duration"):
        assert total(
            workflow, f"workflow_job_{histogram}_seconds_count", outcome="completed"
        ), histogram
    assert named(workflow, "workflow_outbox_backlog")
    assert total(workflow, "workflow_outbox_relay_lag_seconds_count")

    # The callers' side of the same calls, from the runtime's channels.
    workflow_service = "comfyserve.workflow.v1.WorkflowService"
    assert total(
        gateway,
        "gateway_grpc_client_requests_total",
        service=workflow_service,
        method="SubmitJob",
        code="OK",
    )
    assert total(
        gateway,
        "gateway_grpc_client_request_duration_seconds_count",
        service=workflow_service,
        method="SubmitJob",
    )
    assert total(
        scraped["executor"],
        "executor_grpc_client_requests_total",
        service=workflow_service,
        code="OK",
    )
    assert total(
        scraped["executor"],
        "executor_grpc_client_requests_total",
        service="comfyserve.storage.v1.StorageService",
        code="OK",
    )

    assert total(scraped["storage"], "storage_grpc_requests_total", code="OK")
    assert total(scraped["auth"], "auth_grpc_requests_total", code="OK")

    executor = scraped["executor"]
    for class_type in ("EmptyImage", "ImageInvert", "SaveImage"):
        assert total(
            executor, "executor_node_duration_seconds_count", class_type=class_type
        ), class_type
    assert total(executor, "executor_job_duration_seconds_count")
    # No GPU series on a CPU-only worker; on a GPU one, both per device.
    used = named(executor, "executor_gpu_memory_used_bytes")
    assert [labels["device"] for labels in used] == [
        labels["device"] for labels in named(executor, "executor_gpu_memory_free_bytes")
    ]

    assert any(name.startswith("notifier_") for name, _, _ in scraped["notifier"])

    # Routes and methods are templates and names: no job id in any label.
    carrying = [
        (service, name, labels)
        for service, samples in scraped.items()
        for name, labels, _ in samples
        if any(job_id in value or UUID.search(value) for value in labels.values())
    ]
    assert carrying == []
