"""Prometheus metrics of the HTTP surface, in a registry owned by one app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from comfyserve.runtime.grpc import count_client_calls


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        count_client_calls(self.registry, "gateway")
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by method, route template and status class "
            "(2xx, 4xx, 5xx...).",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time to answer an HTTP request (SSE: until the stream ends).",
            ["method", "route"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # The class keeps the series few; the exact code is in the log line.
        self.requests.labels(method, route, f"{status // 100}xx").inc()
        self.latency.labels(method, route).observe(seconds)
