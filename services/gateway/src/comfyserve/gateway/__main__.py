"""`python -m comfyserve.gateway` serves the HTTP API (the gateway owns no schema)."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from comfyserve.gateway.app import create_app
from comfyserve.gateway.server import server_config
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.entrypoint import freeze_startup_heap
from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.telemetry import configure_tracing


async def serve(settings: Settings) -> bool:
    app = create_app(settings)
    server = uvicorn.Server(server_config(app, settings))
    freeze_startup_heap()
    async with serve_metrics(app.state.metrics.registry, settings.metrics_port):
        await server.serve()
    return server.started


def main(argv: list[str]) -> int:
    if argv and argv[0] != "serve":
        sys.stderr.write("usage: python -m comfyserve.gateway [serve]\n")
        return 2
    settings = Settings()
    # Before the app exists, so no line (httpx's presigned URLs included) is
    # ever written unredacted.
    configure_logging(settings.log_level)
    configure_tracing("gateway")
    # As uvicorn.run: a lifespan that failed to start is exit status 3.
    return 0 if asyncio.run(serve(settings)) else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
