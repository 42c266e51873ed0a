"""NotifierService over gRPC: check the caller, decode, call one service
function, encode."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as pb
from comfyserve.contracts.pb.notifier.v1 import notifier_pb2_grpc as pb_grpc
from comfyserve.contracts.scopes import Scope
from comfyserve.notifier.clock import utcnow
from comfyserve.notifier.deliveries.models import (
    Attempt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
)
from comfyserve.notifier.deliveries.service import DeliveryService
from comfyserve.notifier.endpoints.models import Endpoint, EndpointChanges, Secrets
from comfyserve.notifier.endpoints.service import (
    EndpointService,
    EndpointWithSecret,
)
from comfyserve.notifier.errors import InvalidArgument
from comfyserve.runtime.grpc_auth import tenant_of_call

Context = grpc.aio.ServicerContext[Any, Any]

_STATUS_TO_PB = {
    DeliveryStatus.PENDING: pb.DELIVERY_STATUS_PENDING,
    DeliveryStatus.SUCCEEDED: pb.DELIVERY_STATUS_SUCCEEDED,
    DeliveryStatus.DEAD: pb.DELIVERY_STATUS_DEAD,
}
_STATUS_FROM_PB = {value: key for key, value in _STATUS_TO_PB.items()}
READ = Scope.WEBHOOKS_READ
WRITE = Scope.WEBHOOKS_WRITE


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _endpoint(endpoint: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        id=str(endpoint.id),
        tenant_id=endpoint.tenant_id,
        url=endpoint.url,
        event_types=list(endpoint.event_types),
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=_ts(endpoint.created_at),
        updated_at=_ts(endpoint.updated_at),
    )


def _with_secret(found: EndpointWithSecret) -> pb.EndpointWithSecret:
    return pb.EndpointWithSecret(
        endpoint=_endpoint(found.endpoint), secret=found.secret
    )


def _secret(secrets: Secrets, now: datetime) -> pb.SigningSecret:
    overlapping = len(secrets.signing(now)) > 1
    return pb.SigningSecret(
        secret=secrets.current,
        created_at=_ts(secrets.created_at),
        previous_expires_at=_ts(secrets.previous_expires_at) if overlapping else None,
    )


def _attempt(attempt: Attempt) -> pb.Attempt:
    return pb.Attempt(
        number=attempt.number,
        started_at=_ts(attempt.started_at),
        status_code=attempt.status_code,
        latency_ms=attempt.latency_ms,
        response_excerpt=attempt.response_excerpt,
        error=attempt.error,
    )


def _delivery(delivery: Delivery) -> pb.Delivery:
    pending = delivery.status is DeliveryStatus.PENDING
    return pb.Delivery(
        id=delivery.id,
        tenant_id=delivery.tenant_id,
        job_id=delivery.job_id,
        event_type=delivery.event_type,
        endpoint_id="" if delivery.endpoint_id is None else str(delivery.endpoint_id),
        url=delivery.url,
        status=_STATUS_TO_PB[delivery.status],
        attempt_count=delivery.attempt_count,
        created_at=_ts(delivery.created_at),
        next_attempt_at=_ts(delivery.next_attempt_at) if pending else None,
        attempts=[_attempt(a) for a in delivery.attempts],
        dead_reason=delivery.dead_reason,
    )


def _endpoint_filter(value: str) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise InvalidArgument("endpoint_id", "not an endpoint id") from None


class NotifierServicer(pb_grpc.NotifierServiceServicer):
    def __init__(self, endpoints: EndpointService, deliveries: DeliveryService) -> None:
        self.endpoints = endpoints
        self.deliveries = deliveries

    async def CreateEndpoint(
        self, request: pb.CreateEndpointRequest, context: Context
    ) -> pb.EndpointWithSecret:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        created = await self.endpoints.create(
            tenant, request.url, list(request.event_types), request.description
        )
        return _with_secret(created)

    async def ListEndpoints(
        self, request: pb.ListEndpointsRequest, context: Context
    ) -> pb.ListEndpointsResponse:
        tenant = tenant_of_call(request.tenant_id, READ)
        page = await self.endpoints.list(tenant, request.page_size, request.cursor)
        return pb.ListEndpointsResponse(
            endpoints=[_endpoint(e) for e in page.endpoints],
            next_cursor=page.next_cursor,
        )

    async def GetEndpoint(
        self, request: pb.GetEndpointRequest, context: Context
    ) -> pb.Endpoint:
        tenant = tenant_of_call(request.tenant_id, READ)
        return _endpoint(await self.endpoints.get(tenant, request.endpoint_id))

    async def UpdateEndpoint(
        self, request: pb.UpdateEndpointRequest, context: Context
    ) -> pb.Endpoint:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        changes = EndpointChanges(
            url=request.url if request.HasField("url") else None,
            event_types=(
                tuple(request.event_types.values)
                if request.HasField("event_types")
                else None
            ),
            description=(
                request.description if request.HasField("description") else None
            ),
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        updated = await self.endpoints.update(tenant, request.endpoint_id, changes)
        return _endpoint(updated)

    async def DeleteEndpoint(
        self, request: pb.DeleteEndpointRequest, context: Context
    ) -> Empty:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        await self.endpoints.delete(tenant, request.endpoint_id)
        return Empty()

    async def TestEndpoint(
        self, request: pb.TestEndpointRequest, context: Context
    ) -> pb.Delivery:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        return _delivery(await self.deliveries.test(tenant, request.endpoint_id))

    async def RotateEndpointSecret(
        self, request: pb.RotateEndpointSecretRequest, context: Context
    ) -> pb.EndpointWithSecret:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        return _with_secret(
            await self.endpoints.rotate_secret(tenant, request.endpoint_id)
        )

    async def GetSigningSecret(
        self, request: pb.GetSigningSecretRequest, context: Context
    ) -> pb.SigningSecret:
        tenant = tenant_of_call(request.tenant_id, READ)
        secrets = await self.endpoints.signing_secret(tenant)
        return _secret(secrets, utcnow())

    async def RotateSigningSecret(
        self, request: pb.RotateSigningSecretRequest, context: Context
    ) -> pb.SigningSecret:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        secrets = await self.endpoints.rotate_signing_secret(tenant)
        return _secret(secrets, utcnow())

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Context
    ) -> pb.ListDeliveriesResponse:
        tenant = tenant_of_call(request.tenant_id, READ)
        if request.status and request.status not in _STATUS_FROM_PB:
            raise InvalidArgument("status", "not a delivery status")
        where = DeliveryFilter(
            job_id=request.job_id,
            status=_STATUS_FROM_PB.get(request.status),
            endpoint_id=_endpoint_filter(request.endpoint_id),
        )
        page = await self.deliveries.list(
            tenant, where, request.page_size, request.cursor
        )
        return pb.ListDeliveriesResponse(
            deliveries=[_delivery(d) for d in page.deliveries],
            next_cursor=page.next_cursor,
        )

    async def GetDelivery(
        self, request: pb.GetDeliveryRequest, context: Context
    ) -> pb.Delivery:
        tenant = tenant_of_call(request.tenant_id, READ)
        return _delivery(await self.deliveries.get(tenant, request.delivery_id))

    async def ReplayDelivery(
        self, request: pb.ReplayDeliveryRequest, context: Context
    ) -> pb.Delivery:
        tenant = tenant_of_call(request.tenant_id, WRITE)
        return _delivery(await self.deliveries.replay(tenant, request.delivery_id))
