"""`python -m comfyserve.gateway` serves the HTTP API (the gateway owns no schema)."""

from __future__ import annotations

import sys

import uvicorn

from comfyserve.gateway.app import create_app
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.logging import configure_logging


def main(argv: list[str]) -> int:
    if argv and argv[0] != "serve":
        sys.stderr.write("usage: python -m comfyserve.gateway [serve]\n")
        return 2
    settings = Settings()
    configure_logging(settings.log_level)
    # uvicorn stops taking connections on SIGTERM, then lets requests (and
    # SSE streams, which sse-starlette drains) finish within the grace period.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
