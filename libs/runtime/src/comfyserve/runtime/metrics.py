"""Serving a service's Prometheus registry on a port of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["serve_metrics"]


@asynccontextmanager
async def serve_metrics(registry: CollectorRegistry, port: int) -> AsyncIterator[int]:
    """`/metrics` of `registry` on `port` (0 picks a free one) until exit; yields
    the port."""
    server, thread = start_http_server(port, registry=registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
