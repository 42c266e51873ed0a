"""NotifierService in memory: endpoints, signing secrets and deliveries."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as nt

from .rpc import cursor_start, make_rpc_error, timestamp


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class FakeNotifier:
    """Keeps what the service would, refuses what it would (a URL on a
    private address, another tenant's ids) and records every call."""

    def __init__(self) -> None:
        self.endpoints: dict[str, nt.Endpoint] = {}
        self.deliveries: dict[str, nt.Delivery] = {}
        self.secrets: dict[str, nt.SigningSecret] = {}
        self.requests: list[object] = []
        self.failures: dict[str, BaseException] = {}
        self.calls: list[str] = []
        self._clock = datetime(2030, 1, 1, tzinfo=UTC)

    def _record(self, method: str, request: object) -> None:
        self.requests.append(request)
        self.calls.append(method)
        if method in self.failures:
            raise self.failures[method]

    def _now(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    @staticmethod
    def _check_url(url: str) -> None:
        if "10.0.0." in url:
            raise make_rpc_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                "url: resolves to a private address",
                {"url": "resolves to a private address"},
            )

    def add_delivery(self, tenant_id: str, **fields: object) -> nt.Delivery:
        values: dict[str, object] = {
            "id": f"msg_{uuid.uuid4().hex}",
            "tenant_id": tenant_id,
            "event_type": "job.completed",
            "url": "https://hooks.example.com/done",
            "status": nt.DELIVERY_STATUS_SUCCEEDED,
            "attempt_count": 1,
            "created_at": timestamp(self._now()),
            "attempts": [
                nt.Attempt(
                    number=1,
                    started_at=timestamp(self._clock),
                    status_code=204,
                    latency_ms=12,
                )
            ],
            **fields,
        }
        delivery = nt.Delivery(**values)  # type: ignore[arg-type]
        self.deliveries[delivery.id] = delivery
        return delivery

    def _endpoint(self, tenant_id: str, endpoint_id: str) -> nt.Endpoint:
        found = self.endpoints.get(endpoint_id)
        if found is None or found.tenant_id != tenant_id:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "endpoint not found")
        return found

    def _delivery(self, tenant_id: str, delivery_id: str) -> nt.Delivery:
        found = self.deliveries.get(delivery_id)
        if found is None or found.tenant_id != tenant_id:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "delivery not found")
        return found

    def add_endpoint(self, tenant_id: str, **fields: object) -> nt.Endpoint:
        now = timestamp(self._now())
        values: dict[str, object] = {
            "id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "url": "https://hooks.example.com/all",
            "enabled": True,
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        endpoint = nt.Endpoint(**values)  # type: ignore[arg-type]
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    async def create_endpoint(
        self, request: nt.CreateEndpointRequest
    ) -> nt.EndpointWithSecret:
        self._record("create_endpoint", request)
        self._check_url(request.url)
        endpoint = self.add_endpoint(
            request.tenant_id,
            url=request.url,
            event_types=request.event_types,
            description=request.description,
        )
        return nt.EndpointWithSecret(endpoint=endpoint, secret=_secret())

    async def list_endpoints(
        self, request: nt.ListEndpointsRequest
    ) -> nt.ListEndpointsResponse:
        self._record("list_endpoints", request)
        start = cursor_start(request.cursor)
        mine = [e for e in self.endpoints.values() if e.tenant_id == request.tenant_id]
        mine.reverse()
        size = request.page_size or 20
        page = mine[start : start + size]
        more = start + size < len(mine)
        return nt.ListEndpointsResponse(
            endpoints=page, next_cursor=str(start + size) if more else ""
        )

    async def get_endpoint(self, request: nt.GetEndpointRequest) -> nt.Endpoint:
        self._record("get_endpoint", request)
        return self._endpoint(request.tenant_id, request.endpoint_id)

    async def update_endpoint(self, request: nt.UpdateEndpointRequest) -> nt.Endpoint:
        self._record("update_endpoint", request)
        endpoint = self._endpoint(request.tenant_id, request.endpoint_id)
        if request.HasField("url"):
            self._check_url(request.url)
            endpoint.url = request.url
        if request.HasField("event_types"):
            del endpoint.event_types[:]
            endpoint.event_types.extend(request.event_types.values)
        if request.HasField("description"):
            endpoint.description = request.description
        if request.HasField("enabled"):
            endpoint.enabled = request.enabled
            if request.enabled:
                endpoint.disabled_reason = ""
        endpoint.updated_at.CopyFrom(timestamp(self._now()))
        return endpoint

    async def delete_endpoint(self, request: nt.DeleteEndpointRequest) -> None:
        self._record("delete_endpoint", request)
        self._endpoint(request.tenant_id, request.endpoint_id)
        del self.endpoints[request.endpoint_id]

    async def test_endpoint(self, request: nt.TestEndpointRequest) -> nt.Delivery:
        self._record("test_endpoint", request)
        endpoint = self._endpoint(request.tenant_id, request.endpoint_id)
        return self.add_delivery(
            request.tenant_id,
            event_type="webhook.test",
            endpoint_id=endpoint.id,
            url=endpoint.url,
            status=nt.DELIVERY_STATUS_PENDING,
            attempt_count=0,
            attempts=[],
        )

    async def rotate_endpoint_secret(
        self, request: nt.RotateEndpointSecretRequest
    ) -> nt.EndpointWithSecret:
        self._record("rotate_endpoint_secret", request)
        endpoint = self._endpoint(request.tenant_id, request.endpoint_id)
        return nt.EndpointWithSecret(endpoint=endpoint, secret=_secret())

    async def get_signing_secret(
        self, request: nt.GetSigningSecretRequest
    ) -> nt.SigningSecret:
        self._record("get_signing_secret", request)
        return self.secrets.setdefault(
            request.tenant_id,
            nt.SigningSecret(secret=_secret(), created_at=timestamp(self._now())),
        )

    async def rotate_signing_secret(
        self, request: nt.RotateSigningSecretRequest
    ) -> nt.SigningSecret:
        self._record("rotate_signing_secret", request)
        now = self._now()
        rotated = nt.SigningSecret(
            secret=_secret(),
            created_at=timestamp(now),
            previous_expires_at=timestamp(now + timedelta(hours=24)),
        )
        self.secrets[request.tenant_id] = rotated
        return rotated

    async def list_deliveries(
        self, request: nt.ListDeliveriesRequest
    ) -> nt.ListDeliveriesResponse:
        self._record("list_deliveries", request)
        start = cursor_start(request.cursor)
        found = [
            d
            for d in reversed(self.deliveries.values())
            if d.tenant_id == request.tenant_id
            and (not request.job_id or d.job_id == request.job_id)
            and (not request.status or d.status == request.status)
            and (not request.endpoint_id or d.endpoint_id == request.endpoint_id)
        ]
        size = request.page_size or 20
        listed = []
        for delivery in found[start : start + size]:
            brief = nt.Delivery()
            brief.CopyFrom(delivery)
            del brief.attempts[:]
            listed.append(brief)
        more = start + size < len(found)
        return nt.ListDeliveriesResponse(
            deliveries=listed, next_cursor=str(start + size) if more else ""
        )

    async def get_delivery(self, request: nt.GetDeliveryRequest) -> nt.Delivery:
        self._record("get_delivery", request)
        return self._delivery(request.tenant_id, request.delivery_id)

    async def replay_delivery(self, request: nt.ReplayDeliveryRequest) -> nt.Delivery:
        self._record("replay_delivery", request)
        delivery = self._delivery(request.tenant_id, request.delivery_id)
        delivery.status = nt.DELIVERY_STATUS_PENDING
        delivery.next_attempt_at.CopyFrom(timestamp(self._now()))
        return delivery
