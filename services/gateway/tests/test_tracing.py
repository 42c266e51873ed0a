"""Every answer names the trace of its request in `traceparent`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from comfyserve.gateway.app import create_app
from comfyserve.gateway.resources import Resources
from comfyserve.gateway.settings import Settings

from .conftest import FakeResources
from .fakes.storage import FakeObjectStore
from .support import serve

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(
    settings: Settings,
    object_store: FakeObjectStore,
    fake_resources: FakeResources,
    exporter: InMemorySpanExporter,
) -> AsyncIterator[httpx.AsyncClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @asynccontextmanager
    async def fakes(settings: Settings) -> AsyncIterator[Resources]:
        transport = httpx.MockTransport(object_store.handle)
        async with httpx.AsyncClient(transport=transport) as http:
            yield fake_resources(settings, http)

    async with serve(create_app(settings, fakes, tracer_provider=provider)) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status"), [("/workflows", 200), ("/no/such/route", 404)]
)
async def test_answer_names_its_server_span(
    traced: httpx.AsyncClient,
    exporter: InMemorySpanExporter,
    auth_a: dict[str, str],
    path: str,
    status: int,
) -> None:
    response = await traced.get(path, headers=auth_a)

    assert response.status_code == status
    [server] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    context = server.get_span_context()
    assert context is not None
    trace_id, span_id = (
        format_trace_id(context.trace_id),
        format_span_id(context.span_id),
    )
    flags = f"{context.trace_flags:02x}"
    assert response.headers["traceparent"] == f"00-{trace_id}-{span_id}-{flags}"
    assert context.trace_flags.sampled


async def test_request_continues_the_callers_trace(
    traced: httpx.AsyncClient, auth_a: dict[str, str]
) -> None:
    caller = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"

    response = await traced.get("/workflows", headers={**auth_a, "traceparent": caller})

    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01")
    assert span_id != "b7ad6b7169203331"
