"""Readiness probes of the gateway's dependencies."""

from __future__ import annotations

import asyncio
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2  # type: ignore[import-untyped]
from redis.asyncio import Redis
from redis.exceptions import RedisError

_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class Probe(Protocol):
    name: str

    async def check(self, timeout_seconds: float) -> bool:
        """True when the dependency answers and is serving."""
        ...


class GrpcHealthProbe:
    """Asks the standard gRPC health service for one service's status.

    `service` "" is the server's overall status: up. A service name is what the
    server reports for that service, which may be NOT_SERVING while the process
    is up (the workflow service, until it can accept jobs).
    """

    def __init__(self, name: str, channel: grpc.aio.Channel, service: str = "") -> None:
        self.name = name
        self._service = service
        # Called by path: grpc_health ships no typed stub for its service.
        self._check = channel.unary_unary(
            _HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    async def check(self, timeout_seconds: float) -> bool:
        try:
            response = await self._check(
                health_pb2.HealthCheckRequest(service=self._service),
                timeout=timeout_seconds,
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(
            response.status == health_pb2.HealthCheckResponse.ServingStatus.SERVING
        )


class RedisProbe:
    def __init__(self, client: Redis) -> None:
        self.name = "redis"
        self._client = client

    async def check(self, timeout_seconds: float) -> bool:
        try:
            async with asyncio.timeout(timeout_seconds):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False
