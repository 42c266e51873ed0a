"""Jaeger takes spans over OTLP/HTTP at the stack's endpoint and answers them
over its query API."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import format_trace_id

pytestmark = pytest.mark.integration


async def test_an_exported_span_is_found_by_its_trace_id(
    stack: dict[str, str], unique: str
) -> None:
    endpoint = stack["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/v1/traces"
    provider = TracerProvider(resource=Resource({SERVICE_NAME: f"test-{unique}"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint)))
    with provider.get_tracer("test").start_as_current_span(f"probe {unique}") as span:
        trace_id = format_trace_id(span.get_span_context().trace_id)
    provider.shutdown()

    async with httpx.AsyncClient(base_url=stack["JAEGER_URL"]) as client:
        async with asyncio.timeout(20):
            while True:
                response = await client.get(f"/api/traces/{trace_id}")
                if response.is_success:
                    break
                await asyncio.sleep(0.2)
    [found] = response.json()["data"]
    [kept] = found["spans"]
    assert kept["operationName"] == f"probe {unique}"
    assert found["processes"][kept["processID"]]["serviceName"] == f"test-{unique}"
