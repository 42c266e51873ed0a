"""How uvicorn serves the gateway: protocol, limits, proxies and shutdown."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)

from comfyserve.gateway.settings import Settings


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, but a handshake refused with an
    HTTP answer (a 401 on `/ws`) counts as completed, as uvicorn's wsproto
    protocol has it; otherwise uvicorn logs "ASGI callable returned without
    completing handshake" at ERROR for every refusal (Kludex/uvicorn#3138)."""

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get(
            "more_body", False
        ):
            self.handshake_complete = True


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
        ws=WebSocketProtocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # uvicorn stops taking connections on SIGTERM, then lets requests (and
        # SSE streams, which sse-starlette drains) finish within the grace period.
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
