"""One job, one trace: the services export to the stack's Jaeger, and the
trace of a submit holds every service's part of the job, each span's parent
in the same trace, its webhook delivery included."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from tests.e2e.support import (
    Product,
    invert_graph,
    slow_graph,
    submit,
    wait_final,
    wait_for_status,
)
from tools.webhook_receiver import Received, Receiver, serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = {"gateway", "workflow", "executor", "storage"}
NODES = {"EmptyImage", "ImageInvert", "SaveImage"}


def trace_of(traceparent: str) -> str:
    version, trace_id, _span_id, _flags = traceparent.split("-")
    assert version == "00"
    return trace_id


def services_of(trace: dict[str, Any]) -> set[str]:
    return {process["serviceName"] for process in trace["processes"].values()}


def node_class_types(trace: dict[str, Any]) -> set[str]:
    return {
        tag["value"]
        for span in trace["spans"]
        for tag in span["tags"]
        if tag["key"] == "comfyui.node.class_type"
    }


def executor_instances(trace: dict[str, Any]) -> set[str]:
    """The executor processes (instance ids) that sent spans of the trace."""
    return {
        tag["value"]
        for process in trace["processes"].values()
        if process["serviceName"] == "executor"
        for tag in process["tags"]
        if tag["key"] == "service.instance.id"
    }


def run_attempts(trace: dict[str, Any]) -> set[int]:
    return {
        int(tag["value"])
        for span in trace["spans"]
        if span["operationName"] == "executor.job.run"
        for tag in span["tags"]
        if tag["key"] == "comfyserve.job.attempt"
    }


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def service_of(trace: dict[str, Any], span: dict[str, Any]) -> str:
    name: str = trace["processes"][span["processID"]]["serviceName"]
    return name


def parent_of(trace: dict[str, Any], span: dict[str, Any]) -> dict[str, Any]:
    [ref] = [ref for ref in span["references"] if ref["refType"] == "CHILD_OF"]
    [parent] = [s for s in trace["spans"] if s["spanID"] == ref["spanID"]]
    return parent


def dangling(trace: dict[str, Any]) -> list[str]:
    """Spans whose parent is not in the trace (the root excepted)."""
    ids = {span["spanID"] for span in trace["spans"]}
    return [
        span["operationName"]
        for span in trace["spans"]
        for ref in span["references"]
        if ref["refType"] == "CHILD_OF" and ref["spanID"] not in ids
    ]


async def jaeger_trace(
    product: Product, trace_id: str, complete: Any, limit_s: float = 90
) -> dict[str, Any]:
    """The trace once `complete(trace)` holds, or as it is after `limit_s`:
    spans arrive in batches."""
    trace: dict[str, Any] = {"spans": [], "processes": {}}
    deadline = asyncio.get_running_loop().time() + limit_s
    async with httpx.AsyncClient(base_url=product.stack["JAEGER_URL"]) as jaeger:
        while asyncio.get_running_loop().time() < deadline:
            response = await jaeger.get(f"/api/traces/{trace_id}")
            if response.is_success:
                [trace] = response.json()["data"]
                if complete(trace):
                    break
            await asyncio.sleep(1)
    return trace


async def test_a_job_is_one_trace_across_every_service(product: Product) -> None:
    # A colour of its own, so ComfyUI runs every node instead of its cache.
    colour = tuple(random.randrange(256) for _ in range(3))
    async with product.client() as client:
        response = await client.post(
            "/workflows/execute", json={"workflow": invert_graph(colour)}
        )
        assert response.status_code == 202, response.text
        trace_id = trace_of(response.headers["traceparent"])
        job = await wait_final(client, response.json()["execution_id"])
        read = await client.get(f"/workflows/{job['execution_id']}")

    assert job["status"] == "completed", job
    assert job["trace_id"] == trace_id
    assert trace_of(read.headers["traceparent"]) != trace_id  # a request of its own

    def complete(trace: dict[str, Any]) -> bool:
        return (
            services_of(trace) >= SERVICES
            and node_class_types(trace) >= NODES
            and not dangling(trace)
        )

    trace = await jaeger_trace(product, trace_id, complete)
    assert services_of(trace) >= SERVICES
    assert node_class_types(trace) >= NODES
    assert dangling(trace) == []
    names = {span["operationName"] for span in trace["spans"]}
    assert {
        "executor.job.run",
        "comfyui.prompt",
        "executor.output.upload",
        "executor.job.publish_final",
    } <= names
    assert {f"comfyui.node {class_type}" for class_type in NODES} <= names
    roots = [span for span in trace["spans"] if not span["references"]]
    assert [root["operationName"] for root in roots] == ["POST /workflows/execute"]


async def test_a_refused_request_names_its_trace_too(product: Product) -> None:
    async with product.client() as client:
        response = await client.get("/workflows/not-a-job")
    assert response.status_code in (404, 422)
    assert len(trace_of(response.headers["traceparent"])) == 32


async def test_a_requeued_job_keeps_its_trace(product: Product) -> None:
    executor = product.services["executor"]
    async with product.client() as client:
        accepted = await submit(client, slow_graph(3, random.randrange(1 << 24)))
        job_id = accepted["execution_id"]
        running = await wait_for_status(client, job_id, {"running"})
        trace_id = running["trace_id"]
        # The first worker's spans are in the store before it dies.
        first = await jaeger_trace(product, trace_id, executor_instances)
        assert executor_instances(first)
        executor.kill()
        executor.start()
        job = await wait_final(client, job_id, limit_s=300)

    assert job["status"] == "completed", job
    assert job["attempt"] >= 2
    assert job["trace_id"] == trace_id

    def both_attempts(trace: dict[str, Any]) -> bool:
        return len(executor_instances(trace)) >= 2 and job["attempt"] in run_attempts(
            trace
        )

    trace = await jaeger_trace(product, trace_id, both_attempts)
    assert len(executor_instances(trace)) >= 2
    assert job["attempt"] in run_attempts(trace)


async def first_delivery(receiver: Receiver, limit_s: float = 60) -> Received:
    """The first delivery `receiver` verified; it serves in a thread of its own."""
    async with asyncio.timeout(limit_s):
        while True:
            if receiver.received:
                return receiver.received[0]
            await asyncio.sleep(0.2)


async def test_the_webhook_delivery_is_in_the_jobs_trace(product: Product) -> None:
    colour = tuple(random.randrange(256) for _ in range(3))
    async with product.client() as client:
        secret = await client.get("/webhooks/secret")
        assert secret.status_code == 200, secret.text
        receiver = Receiver([secret.json()["secret"]])
        with serving(receiver) as url:
            # A token in the query, as receivers put them: no span shows it.
            accepted = await submit(
                client, invert_graph(colour), webhook_url=f"{url}/hook?token=tr4ce"
            )
            job = await wait_final(client, accepted["execution_id"])
            delivery = await first_delivery(receiver)
    assert job["status"] == "completed", job
    assert receiver.refused == []

    def delivered(trace: dict[str, Any]) -> bool:
        ids = {
            tags(span).get("comfyserve.delivery.id")
            for span in trace["spans"]
            if span["operationName"] == "webhook.deliver"
        }
        return delivery.webhook_id in ids and not dangling(trace)

    trace = await jaeger_trace(product, job["trace_id"], delivered)
    assert dangling(trace) == []
    # A job may send several deliveries (one per event its webhook takes):
    # the one the receiver verified first is in the trace.
    [attempt] = [
        s
        for s in trace["spans"]
        if s["operationName"] == "webhook.deliver"
        and tags(s)["comfyserve.delivery.id"] == delivery.webhook_id
    ]
    assert service_of(trace, attempt) == "notifier"
    assert tags(attempt)["comfyserve.delivery.attempt"] == 1
    assert tags(attempt)["comfyserve.job.id"] == job["execution_id"]
    assert tags(attempt)["http.response.status_code"] == 204
    # Sent later, from Postgres, yet under the span that consumed the event,
    # itself under the final event's producer.
    recorded = parent_of(trace, attempt)
    assert recorded["operationName"].startswith("notifier.event.record ")
    assert tags(recorded)["span.kind"] == "consumer"
    assert service_of(trace, parent_of(trace, recorded)) != "notifier"
    roots = [span for span in trace["spans"] if not span["references"]]
    assert [root["operationName"] for root in roots] == ["POST /workflows/execute"]
    assert not [
        span["operationName"]
        for span in trace["spans"]
        for value in tags(span).values()
        if "tr4ce" in str(value)
    ]
