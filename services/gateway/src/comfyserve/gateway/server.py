"""How uvicorn serves the gateway: protocol, limits, proxies and shutdown."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from comfyserve.gateway.settings import Settings


def server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # httptools, uvicorn's parser when installed, reads a request head of any
        # size; h11 refuses one over its bound and stops reading it.
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # uvicorn stops taking connections on SIGTERM, then lets requests (and
        # SSE streams, which sse-starlette drains) finish within the grace period.
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
