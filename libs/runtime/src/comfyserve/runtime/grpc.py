"""gRPC channels and servers with the product's message limits.

Every channel and server sends and receives up to `GRPC_MAX_MESSAGE_BYTES`, so
a request is only ever refused by the documented limits of the API, never by
gRPC's 4 MiB default.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES

__all__ = ["OPTIONS", "create_server", "insecure_channel"]

OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
)


def insecure_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=OPTIONS)


def create_server() -> grpc.aio.Server:
    return grpc.aio.server(options=OPTIONS)
