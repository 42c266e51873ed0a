"""Prometheus metrics, on a registry of their own built by the app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.logins = Counter(
            "auth_logins",
            "Password logins by outcome (success, refused, throttled).",
            ["outcome"],
            registry=self.registry,
        )
        self.authentications = Counter(
            "auth_authentications",
            "Credentials checked, by kind (token, api_key, service) and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.refresh_reuse = Counter(
            "auth_refresh_reuse_detected",
            "Refresh tokens presented again after rotation; each revoked its family.",
            registry=self.registry,
        )
