"""What every feature's gRPC module shares: the call context, the caller's
credential and timestamps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.auth.credentials.service import CredentialService
from comfyserve.runtime.auth import Principal

Context = grpc.aio.ServicerContext[Any, Any]


def bearer(context: Context) -> str:
    """The credential of the call's `authorization: Bearer ...`; empty when
    there is none."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, credential = value.partition(" ")
            if scheme.lower() == "bearer":
                return credential.strip()
    return ""


async def caller(context: Context, credentials: CredentialService) -> Principal:
    """Who makes the call; UNAUTHENTICATED (raised) without a valid credential."""
    return await credentials.authenticate(bearer(context))


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
