"""`python -m comfyserve.runtime.probe <target>`: is this service up? Exit 0 if so.

One health check for every container image: `grpc://host:port[/service]` asks
the standard gRPC health service, `http(s)://...` expects a 200.
"""

from __future__ import annotations

import sys
import urllib.request
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

__all__ = ["healthy", "main"]

_TIMEOUT_S = 2.0


def _grpc(address: str, service: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=_TIMEOUT_S
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def healthy(target: str) -> bool:
    parts = urlsplit(target)
    if parts.scheme == "grpc":
        return _grpc(parts.netloc, parts.path.strip("/"))
    if parts.scheme in ("http", "https"):
        return _http(target)
    raise ValueError(f"not a grpc:// or http(s):// target: {target!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m comfyserve.runtime.probe <target>\n")
        return 2
    return 0 if healthy(argv[0]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
