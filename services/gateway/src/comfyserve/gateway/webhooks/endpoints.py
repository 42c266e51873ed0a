"""HTTP routes of webhooks: decode, call the service, encode."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.auth.dependencies import Access, Caller
from comfyserve.gateway.errors import NotFoundError
from comfyserve.gateway.limits.policy import RouteClass
from comfyserve.gateway.openapi.answers import (
    BODY_TOO_LARGE,
    ENDPOINT_NOT_FOUND,
    INVALID_REQUEST,
    JOB_NOT_FOUND,
)
from comfyserve.gateway.openapi.responses import calls, error_responses, guarded
from comfyserve.gateway.resources import ResourcesDep
from comfyserve.gateway.webhooks.models import (
    MAX_PAGE_SIZE,
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
from comfyserve.gateway.webhooks.service import WebhooksService

router = APIRouter(tags=["webhooks"])

READ = Access(RouteClass.READ, Scope.WEBHOOKS_READ)
WRITE = Access(RouteClass.MANAGE, Scope.WEBHOOKS_WRITE)
# The signing secret lets its holder forge deliveries: showing it takes the
# write scope, though it changes nothing.
SHOW_SECRET = Access(RouteClass.READ, Scope.WEBHOOKS_WRITE)


def _reader(
    caller: Annotated[Caller, Depends(READ)], resources: ResourcesDep
) -> WebhooksService:
    return WebhooksService(resources.notifier, resources.workflow, caller.tenant_id)


def _writer(
    caller: Annotated[Caller, Depends(WRITE)], resources: ResourcesDep
) -> WebhooksService:
    return WebhooksService(resources.notifier, resources.workflow, caller.tenant_id)


def _secret_holder(
    caller: Annotated[Caller, Depends(SHOW_SECRET)], resources: ResourcesDep
) -> WebhooksService:
    return WebhooksService(resources.notifier, resources.workflow, caller.tenant_id)


ReadWebhooks = Annotated[WebhooksService, Depends(_reader)]
WriteWebhooks = Annotated[WebhooksService, Depends(_writer)]
SecretWebhooks = Annotated[WebhooksService, Depends(_secret_holder)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Cursor = Annotated[str | None, Query(max_length=1024)]


def _endpoint_id(endpoint_id: Annotated[str, Path()]) -> str:
    """Endpoint ids are UUIDs; anything else is a missing endpoint."""
    try:
        return str(uuid.UUID(endpoint_id))
    except ValueError:
        raise NotFoundError("No such webhook endpoint") from None


EndpointId = Annotated[str, Depends(_endpoint_id)]
DeliveryId = Annotated[str, Path(max_length=200)]

_SIGNED = (
    "Deliveries are signed as Standard Webhooks: `webhook-id` (the delivery's "
    "`id`, the same on every retry), `webhook-timestamp` and `webhook-signature` "
    "(`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per secret in force)."
)
_PAGED = (
    f"`limit` is 1 to {MAX_PAGE_SIZE} (20 by default); pass `next_cursor` as "
    "`cursor` for the next page (it is null on the last)."
)


@router.post(
    "/webhooks/endpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointWithSecret,
    summary="Register a webhook endpoint",
    description=(
        "The endpoint receives the chosen events of every execution of the "
        "tenant, signed with a secret of its own, returned here only. "
        f"{_SIGNED}"
    ),
    responses=error_responses(
        *guarded(WRITE), BODY_TOO_LARGE, INVALID_REQUEST, *calls("create_endpoint")
    ),
)
async def create_endpoint(
    body: EndpointCreate, webhooks: WriteWebhooks, response: Response
) -> EndpointWithSecret:
    created = await webhooks.create_endpoint(body)
    response.headers["Location"] = f"/webhooks/endpoints/{created.id}"
    return created


@router.get(
    "/webhooks/endpoints",
    response_model=EndpointPage,
    summary="List webhook endpoints",
    description=f"The tenant's endpoints, newest first, without secrets. {_PAGED}",
    responses=error_responses(
        *guarded(READ), INVALID_REQUEST, *calls("list_endpoints")
    ),
)
async def list_endpoints(
    webhooks: ReadWebhooks, limit: Limit = 20, cursor: Cursor = None
) -> EndpointPage:
    return await webhooks.endpoints(limit, cursor)


@router.get(
    "/webhooks/endpoints/{endpoint_id}",
    response_model=Endpoint,
    summary="Get a webhook endpoint",
    description="The endpoint, without its secret.",
    responses=error_responses(
        *guarded(READ), ENDPOINT_NOT_FOUND, *calls("get_endpoint")
    ),
)
async def get_endpoint(endpoint_id: EndpointId, webhooks: ReadWebhooks) -> Endpoint:
    return await webhooks.endpoint(endpoint_id)


@router.patch(
    "/webhooks/endpoints/{endpoint_id}",
    response_model=Endpoint,
    summary="Change a webhook endpoint",
    description=(
        "Changes the fields sent and leaves the others; `enabled: true` "
        "re-enables an endpoint the service disabled (`disabled_reason`)."
    ),
    responses=error_responses(
        *guarded(WRITE),
        ENDPOINT_NOT_FOUND,
        BODY_TOO_LARGE,
        INVALID_REQUEST,
        *calls("update_endpoint"),
    ),
)
async def update_endpoint(
    endpoint_id: EndpointId, body: EndpointUpdate, webhooks: WriteWebhooks
) -> Endpoint:
    return await webhooks.update_endpoint(endpoint_id, body)


@router.delete(
    "/webhooks/endpoints/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook endpoint",
    description="Nothing more is sent to it; its deliveries stay in the log.",
    responses=error_responses(
        *guarded(WRITE), ENDPOINT_NOT_FOUND, *calls("delete_endpoint")
    ),
)
async def delete_endpoint(endpoint_id: EndpointId, webhooks: WriteWebhooks) -> Response:
    await webhooks.delete_endpoint(endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/endpoints/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Delivery,
    summary="Send a test delivery",
    description=(
        "Records a `webhook.test` delivery to the endpoint and sends it like any "
        "other (signed, retried); follow it at `GET /webhooks/deliveries/{id}`."
    ),
    responses=error_responses(
        *guarded(WRITE), ENDPOINT_NOT_FOUND, *calls("test_endpoint")
    ),
)
async def test_endpoint(endpoint_id: EndpointId, webhooks: WriteWebhooks) -> Delivery:
    return await webhooks.test_endpoint(endpoint_id)


@router.post(
    "/webhooks/endpoints/{endpoint_id}/secret/rotate",
    response_model=EndpointWithSecret,
    summary="Rotate a webhook endpoint's secret",
    description=(
        "Returns the endpoint with a new secret; the previous one keeps signing "
        "alongside it for an overlap, so a receiver can switch without a gap."
    ),
    responses=error_responses(
        *guarded(WRITE), ENDPOINT_NOT_FOUND, *calls("rotate_endpoint_secret")
    ),
)
async def rotate_endpoint_secret(
    endpoint_id: EndpointId, webhooks: WriteWebhooks
) -> EndpointWithSecret:
    return await webhooks.rotate_endpoint_secret(endpoint_id)


@router.get(
    "/webhooks/secret",
    response_model=SigningSecret,
    summary="Get the signing secret",
    description=(
        "The secret that signs deliveries to executions' own `webhook_url`, made "
        "on first use. It lets its holder forge deliveries, so it takes the "
        f"`webhooks:write` scope. {_SIGNED}"
    ),
    responses=error_responses(*guarded(SHOW_SECRET), *calls("get_signing_secret")),
)
async def get_secret(webhooks: SecretWebhooks) -> SigningSecret:
    return await webhooks.secret()


@router.post(
    "/webhooks/secret/rotate",
    response_model=SigningSecret,
    summary="Rotate the signing secret",
    description=(
        "Replaces the signing secret; until `previous_expires_at` every delivery "
        "carries a signature by each, so receivers verify with either."
    ),
    responses=error_responses(*guarded(WRITE), *calls("rotate_signing_secret")),
)
async def rotate_secret(webhooks: WriteWebhooks) -> SigningSecret:
    return await webhooks.rotate_secret()


@router.get(
    "/webhooks/deliveries",
    response_model=DeliveryPage,
    summary="List deliveries",
    description=(
        "The tenant's deliveries, newest first, without attempts; `status` and "
        f"`endpoint` narrow it. {_PAGED}"
    ),
    responses=error_responses(
        *guarded(READ), INVALID_REQUEST, *calls("list_deliveries")
    ),
)
async def list_deliveries(
    webhooks: ReadWebhooks,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    endpoint: Annotated[
        uuid.UUID | None, Query(description="An endpoint's id.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> DeliveryPage:
    endpoint_id = str(endpoint) if endpoint else None
    return await webhooks.deliveries(limit, cursor, status_filter, endpoint_id)


@router.get(
    "/webhooks/deliveries/{delivery_id}",
    response_model=Delivery,
    summary="Get a delivery",
    description=(
        "The delivery with every attempt, oldest first: status code, latency and "
        "the start of the receiver's answer."
    ),
    responses=error_responses(*guarded(READ), INVALID_REQUEST, *calls("get_delivery")),
)
async def get_delivery(delivery_id: DeliveryId, webhooks: ReadWebhooks) -> Delivery:
    return await webhooks.delivery(delivery_id)


@router.post(
    "/webhooks/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Delivery,
    summary="Replay a delivery",
    description=(
        "Sends the delivery again, whatever its status: the same body and "
        "`webhook-id`, as a new attempt due now."
    ),
    responses=error_responses(
        *guarded(WRITE), INVALID_REQUEST, *calls("replay_delivery")
    ),
)
async def replay_delivery(delivery_id: DeliveryId, webhooks: WriteWebhooks) -> Delivery:
    return await webhooks.replay(delivery_id)


@router.get(
    "/workflows/{execution_id}/deliveries",
    response_model=DeliveryPage,
    summary="List an execution's deliveries",
    description=(
        "The deliveries of one execution (to its `webhook_url` and to the "
        f"tenant's endpoints), newest first. {_PAGED}"
    ),
    responses=error_responses(
        *guarded(READ),
        JOB_NOT_FOUND,
        INVALID_REQUEST,
        *calls("get_job", "list_deliveries"),
    ),
)
async def list_execution_deliveries(
    execution_id: str, webhooks: ReadWebhooks, limit: Limit = 20, cursor: Cursor = None
) -> DeliveryPage:
    return await webhooks.job_deliveries(execution_id, limit, cursor)
