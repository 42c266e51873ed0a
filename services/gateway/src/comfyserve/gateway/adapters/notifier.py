"""NotifierService client: webhook endpoints, signing secrets, deliveries.

Errors travel as `grpc.aio.AioRpcError`, exactly as the service answered them;
the gateway maps them to HTTP in one handler.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as nt
from comfyserve.contracts.pb.notifier.v1 import notifier_pb2_grpc as nt_grpc


class NotifierClient(Protocol):
    async def create_endpoint(
        self, request: nt.CreateEndpointRequest
    ) -> nt.EndpointWithSecret: ...

    async def list_endpoints(
        self, request: nt.ListEndpointsRequest
    ) -> nt.ListEndpointsResponse: ...

    async def get_endpoint(self, request: nt.GetEndpointRequest) -> nt.Endpoint: ...

    async def update_endpoint(
        self, request: nt.UpdateEndpointRequest
    ) -> nt.Endpoint: ...

    async def delete_endpoint(self, request: nt.DeleteEndpointRequest) -> None: ...

    async def test_endpoint(self, request: nt.TestEndpointRequest) -> nt.Delivery: ...

    async def rotate_endpoint_secret(
        self, request: nt.RotateEndpointSecretRequest
    ) -> nt.EndpointWithSecret: ...

    async def get_signing_secret(
        self, request: nt.GetSigningSecretRequest
    ) -> nt.SigningSecret: ...

    async def rotate_signing_secret(
        self, request: nt.RotateSigningSecretRequest
    ) -> nt.SigningSecret: ...

    async def list_deliveries(
        self, request: nt.ListDeliveriesRequest
    ) -> nt.ListDeliveriesResponse: ...

    async def get_delivery(self, request: nt.GetDeliveryRequest) -> nt.Delivery: ...

    async def replay_delivery(
        self, request: nt.ReplayDeliveryRequest
    ) -> nt.Delivery: ...


class GrpcNotifierClient:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float) -> None:
        self._stub = nt_grpc.NotifierServiceStub(channel)
        self._timeout = timeout_seconds

    async def create_endpoint(
        self, request: nt.CreateEndpointRequest
    ) -> nt.EndpointWithSecret:
        return await self._stub.CreateEndpoint(request, timeout=self._timeout)

    async def list_endpoints(
        self, request: nt.ListEndpointsRequest
    ) -> nt.ListEndpointsResponse:
        return await self._stub.ListEndpoints(request, timeout=self._timeout)

    async def get_endpoint(self, request: nt.GetEndpointRequest) -> nt.Endpoint:
        return await self._stub.GetEndpoint(request, timeout=self._timeout)

    async def update_endpoint(self, request: nt.UpdateEndpointRequest) -> nt.Endpoint:
        return await self._stub.UpdateEndpoint(request, timeout=self._timeout)

    async def delete_endpoint(self, request: nt.DeleteEndpointRequest) -> None:
        await self._stub.DeleteEndpoint(request, timeout=self._timeout)

    async def test_endpoint(self, request: nt.TestEndpointRequest) -> nt.Delivery:
        return await self._stub.TestEndpoint(request, timeout=self._timeout)

    async def rotate_endpoint_secret(
        self, request: nt.RotateEndpointSecretRequest
    ) -> nt.EndpointWithSecret:
        return await self._stub.RotateEndpointSecret(request, timeout=self._timeout)

    async def get_signing_secret(
        self, request: nt.GetSigningSecretRequest
    ) -> nt.SigningSecret:
        return await self._stub.GetSigningSecret(request, timeout=self._timeout)

    async def rotate_signing_secret(
        self, request: nt.RotateSigningSecretRequest
    ) -> nt.SigningSecret:
        return await self._stub.RotateSigningSecret(request, timeout=self._timeout)

    async def list_deliveries(
        self, request: nt.ListDeliveriesRequest
    ) -> nt.ListDeliveriesResponse:
        return await self._stub.ListDeliveries(request, timeout=self._timeout)

    async def get_delivery(self, request: nt.GetDeliveryRequest) -> nt.Delivery:
        return await self._stub.GetDelivery(request, timeout=self._timeout)

    async def replay_delivery(self, request: nt.ReplayDeliveryRequest) -> nt.Delivery:
        return await self._stub.ReplayDelivery(request, timeout=self._timeout)
