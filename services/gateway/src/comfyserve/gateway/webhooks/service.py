"""The webhook routes' calls to NotifierService, translated both ways.

The notifier owns endpoints, secrets and deliveries and checks every URL it
is given; nothing about them is decided here.
"""

from __future__ import annotations

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as nt
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.adapters.notifier import NotifierClient
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.jobs.translate import parse_job_id
from comfyserve.gateway.protos import optional_int, optional_time
from comfyserve.gateway.webhooks.models import (
    Attempt,
    Delivery,
    DeliveryPage,
    DeliveryStatus,
    Endpoint,
    EndpointCreate,
    EndpointPage,
    EndpointUpdate,
    EndpointWithSecret,
    SigningSecret,
)

_STATUS_FROM_PB = {
    nt.DELIVERY_STATUS_PENDING: DeliveryStatus.PENDING,
    nt.DELIVERY_STATUS_SUCCEEDED: DeliveryStatus.SUCCEEDED,
    nt.DELIVERY_STATUS_DEAD: DeliveryStatus.DEAD,
}
_STATUS_TO_PB = {status: value for value, status in _STATUS_FROM_PB.items()}


def endpoint(message: nt.Endpoint) -> Endpoint:
    return Endpoint(
        id=message.id,
        url=message.url,
        event_types=list(message.event_types),
        description=message.description,
        enabled=message.enabled,
        disabled_reason=message.disabled_reason or None,
        created_at=optional_time(message, "created_at"),
        updated_at=optional_time(message, "updated_at"),
    )


def endpoint_with_secret(message: nt.EndpointWithSecret) -> EndpointWithSecret:
    return EndpointWithSecret(
        **endpoint(message.endpoint).model_dump(), secret=message.secret
    )


def signing_secret(message: nt.SigningSecret) -> SigningSecret:
    return SigningSecret(
        secret=message.secret,
        created_at=optional_time(message, "created_at"),
        previous_expires_at=optional_time(message, "previous_expires_at"),
    )


def attempt(message: nt.Attempt) -> Attempt:
    return Attempt(
        number=message.number,
        started_at=optional_time(message, "started_at"),
        status_code=optional_int(message, "status_code"),
        latency_ms=message.latency_ms,
        response_excerpt=message.response_excerpt,
        error=message.error or None,
    )


def delivery(message: nt.Delivery, *, with_attempts: bool = False) -> Delivery:
    return Delivery(
        id=message.id,
        execution_id=message.job_id,
        event_type=message.event_type,
        endpoint_id=message.endpoint_id or None,
        url=message.url,
        # An unknown status from a newer notifier reads as still pending.
        status=_STATUS_FROM_PB.get(message.status, DeliveryStatus.PENDING),
        attempt_count=message.attempt_count,
        created_at=optional_time(message, "created_at"),
        next_attempt_at=optional_time(message, "next_attempt_at"),
        dead_reason=message.dead_reason or None,
        attempts=[attempt(a) for a in message.attempts] if with_attempts else None,
    )


class WebhooksService:
    def __init__(
        self, notifier: NotifierClient, workflow: WorkflowClient, tenant_id: str
    ) -> None:
        self._notifier = notifier
        self._workflow = workflow
        self._tenant_id = tenant_id

    async def create_endpoint(self, body: EndpointCreate) -> EndpointWithSecret:
        created = await self._notifier.create_endpoint(
            nt.CreateEndpointRequest(
                tenant_id=self._tenant_id,
                url=str(body.url),
                event_types=body.event_types,
                description=body.description,
            )
        )
        return endpoint_with_secret(created)

    async def endpoints(self, limit: int, cursor: str | None) -> EndpointPage:
        page = await self._notifier.list_endpoints(
            nt.ListEndpointsRequest(
                tenant_id=self._tenant_id, page_size=limit, cursor=cursor or ""
            )
        )
        return EndpointPage(
            items=[endpoint(e) for e in page.endpoints],
            next_cursor=page.next_cursor or None,
        )

    async def endpoint(self, endpoint_id: str) -> Endpoint:
        found = await self._notifier.get_endpoint(
            nt.GetEndpointRequest(tenant_id=self._tenant_id, endpoint_id=endpoint_id)
        )
        return endpoint(found)

    async def update_endpoint(self, endpoint_id: str, body: EndpointUpdate) -> Endpoint:
        request = nt.UpdateEndpointRequest(
            tenant_id=self._tenant_id, endpoint_id=endpoint_id
        )
        if body.url is not None:
            request.url = str(body.url)
        if body.event_types is not None:
            # Set even when empty: an empty filter means the final events.
            request.event_types.SetInParent()
            request.event_types.values.extend(body.event_types)
        if body.description is not None:
            request.description = body.description
        if body.enabled is not None:
            request.enabled = body.enabled
        return endpoint(await self._notifier.update_endpoint(request))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self._notifier.delete_endpoint(
            nt.DeleteEndpointRequest(tenant_id=self._tenant_id, endpoint_id=endpoint_id)
        )

    async def test_endpoint(self, endpoint_id: str) -> Delivery:
        sent = await self._notifier.test_endpoint(
            nt.TestEndpointRequest(tenant_id=self._tenant_id, endpoint_id=endpoint_id)
        )
        return delivery(sent)

    async def rotate_endpoint_secret(self, endpoint_id: str) -> EndpointWithSecret:
        rotated = await self._notifier.rotate_endpoint_secret(
            nt.RotateEndpointSecretRequest(
                tenant_id=self._tenant_id, endpoint_id=endpoint_id
            )
        )
        return endpoint_with_secret(rotated)

    async def secret(self) -> SigningSecret:
        found = await self._notifier.get_signing_secret(
            nt.GetSigningSecretRequest(tenant_id=self._tenant_id)
        )
        return signing_secret(found)

    async def rotate_secret(self) -> SigningSecret:
        rotated = await self._notifier.rotate_signing_secret(
            nt.RotateSigningSecretRequest(tenant_id=self._tenant_id)
        )
        return signing_secret(rotated)

    async def deliveries(
        self,
        limit: int,
        cursor: str | None,
        status: DeliveryStatus | None = None,
        endpoint_id: str | None = None,
    ) -> DeliveryPage:
        return await self._deliveries(
            nt.ListDeliveriesRequest(
                tenant_id=self._tenant_id,
                page_size=limit,
                cursor=cursor or "",
                status=_STATUS_TO_PB[status]
                if status
                else nt.DELIVERY_STATUS_UNSPECIFIED,
                endpoint_id=endpoint_id or "",
            )
        )

    async def job_deliveries(
        self, job_id: str, limit: int, cursor: str | None
    ) -> DeliveryPage:
        """The execution's deliveries; 404 for an execution the caller cannot
        see, as `GET /workflows/{id}` answers, rather than an empty page."""
        job = await self._workflow.get_job(
            wf.GetJobRequest(tenant_id=self._tenant_id, job_id=parse_job_id(job_id))
        )
        return await self._deliveries(
            nt.ListDeliveriesRequest(
                tenant_id=self._tenant_id,
                page_size=limit,
                cursor=cursor or "",
                job_id=job.id,
            )
        )

    async def _deliveries(self, request: nt.ListDeliveriesRequest) -> DeliveryPage:
        page = await self._notifier.list_deliveries(request)
        return DeliveryPage(
            items=[delivery(d) for d in page.deliveries],
            next_cursor=page.next_cursor or None,
        )

    async def delivery(self, delivery_id: str) -> Delivery:
        found = await self._notifier.get_delivery(
            nt.GetDeliveryRequest(tenant_id=self._tenant_id, delivery_id=delivery_id)
        )
        return delivery(found, with_attempts=True)

    async def replay(self, delivery_id: str) -> Delivery:
        replayed = await self._notifier.replay_delivery(
            nt.ReplayDeliveryRequest(tenant_id=self._tenant_id, delivery_id=delivery_id)
        )
        return delivery(replayed)
