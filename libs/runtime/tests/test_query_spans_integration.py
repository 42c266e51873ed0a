"""Queries on an engine the runtime makes are spans of the trace that runs
them, once a service has installed the SQLAlchemy instrumentation at start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from sqlalchemy import text

from comfyserve.runtime.database import database_engine
from comfyserve.runtime.telemetry import instrument

pytestmark = pytest.mark.integration


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = SQLAlchemyInstrumentor()
    # As `configure_tracing` installs it.
    instrument(instrumentor, provider)
    yield provider, exporter
    instrumentor.uninstrument()


async def test_a_query_is_a_child_of_the_current_span(
    stack: dict[str, str], traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    async with database_engine(stack["DATABASE_URL"], "public") as engine:
        with provider.get_tracer("test").start_as_current_span("request") as request:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    # The statement, not the connection it took.
    assert [s.name for s in exporter.get_finished_spans()] == ["SELECT", "request"]
    [query, _] = exporter.get_finished_spans()
    assert query.parent is not None
    assert query.parent.span_id == request.get_span_context().span_id
