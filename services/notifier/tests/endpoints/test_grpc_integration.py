"""NotifierService over real gRPC: endpoints, secrets and the delivery log,
each call scoped to its tenant, every bad input a clear INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import pytest
from standardwebhooks.webhooks import Webhook

from comfyserve.contracts.pb.notifier.v1 import notifier_pb2 as pb
from comfyserve.runtime.grpc import rpc_details

from ..conftest import Receiver, eventually

pytestmark = pytest.mark.integration

TENANT = "tenant-e"
OTHER = "tenant-other"


async def refusal(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_create_shows_the_secret_once_and_get_never(
    client, receiver: Receiver
) -> None:
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(
            tenant_id=TENANT,
            url=receiver.url,
            event_types=["job.completed", "job.progress"],
            description="ci",
        )
    )
    found = await client.GetEndpoint(
        pb.GetEndpointRequest(tenant_id=TENANT, endpoint_id=created.endpoint.id)
    )

    assert created.secret.startswith("whsec_")
    assert found == created.endpoint
    assert list(found.event_types) == ["job.completed", "job.progress"]
    assert (found.enabled, found.description) == (True, "ci")
    assert "secret" not in {f.name for f, _ in found.ListFields()}


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/",
        "ftp://example.com/hook",
        "not a url",
        "",
    ],
)
async def test_a_url_the_guard_refuses_is_invalid_naming_the_field(
    client, url: str
) -> None:
    error = await refusal(
        client.CreateEndpoint(pb.CreateEndpointRequest(tenant_id=TENANT, url=url))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(rpc_details(error).fields) == {"url"}


async def test_an_unknown_event_type_is_invalid(client, receiver: Receiver) -> None:
    error = await refusal(
        client.CreateEndpoint(
            pb.CreateEndpointRequest(
                tenant_id=TENANT, url=receiver.url, event_types=["job.exploded"]
            )
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job.exploded" in rpc_details(error).fields["event_types"]


async def test_another_tenants_endpoint_is_not_found(
    client, receiver: Receiver
) -> None:
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url)
    )
    theirs = pb.GetEndpointRequest(tenant_id=OTHER, endpoint_id=created.endpoint.id)

    error = await refusal(client.GetEndpoint(theirs))
    listed = await client.ListEndpoints(pb.ListEndpointsRequest(tenant_id=OTHER))
    deleted = await refusal(
        client.DeleteEndpoint(
            pb.DeleteEndpointRequest(tenant_id=OTHER, endpoint_id=created.endpoint.id)
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert deleted.code() == grpc.StatusCode.NOT_FOUND
    assert list(listed.endpoints) == []


async def test_update_and_delete(client, receiver: Receiver) -> None:
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url)
    )
    endpoint_id = created.endpoint.id

    disabled = await client.UpdateEndpoint(
        pb.UpdateEndpointRequest(
            tenant_id=TENANT,
            endpoint_id=endpoint_id,
            enabled=False,
            event_types=pb.EventTypes(values=["job.failed"]),
        )
    )
    described = await client.UpdateEndpoint(
        pb.UpdateEndpointRequest(
            tenant_id=TENANT, endpoint_id=endpoint_id, description="renamed"
        )
    )
    await client.DeleteEndpoint(
        pb.DeleteEndpointRequest(tenant_id=TENANT, endpoint_id=endpoint_id)
    )
    gone = await refusal(
        client.GetEndpoint(
            pb.GetEndpointRequest(tenant_id=TENANT, endpoint_id=endpoint_id)
        )
    )

    assert (disabled.enabled, list(disabled.event_types)) == (False, ["job.failed"])
    assert (described.enabled, described.description) == (False, "renamed")
    assert list(described.event_types) == ["job.failed"]
    assert gone.code() == grpc.StatusCode.NOT_FOUND


async def test_endpoints_page_by_cursor_newest_first(
    client, receiver: Receiver
) -> None:
    ids = [
        (
            await client.CreateEndpoint(
                pb.CreateEndpointRequest(
                    tenant_id=TENANT, url=f"{receiver.url}?{n}", description=str(n)
                )
            )
        ).endpoint.id
        for n in range(3)
    ]

    first = await client.ListEndpoints(
        pb.ListEndpointsRequest(tenant_id=TENANT, page_size=2)
    )
    second = await client.ListEndpoints(
        pb.ListEndpointsRequest(tenant_id=TENANT, page_size=2, cursor=first.next_cursor)
    )
    bad = await refusal(
        client.ListEndpoints(pb.ListEndpointsRequest(tenant_id=TENANT, cursor="x!"))
    )

    listed = [e.id for e in [*first.endpoints, *second.endpoints]]
    assert sorted(listed) == sorted(ids)
    assert len(first.endpoints) == 2
    assert second.next_cursor == ""
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(rpc_details(bad).fields) == {"cursor"}


async def test_the_tenant_secret_is_stable_until_rotated(client) -> None:
    first = await client.GetSigningSecret(pb.GetSigningSecretRequest(tenant_id=TENANT))
    again = await client.GetSigningSecret(pb.GetSigningSecretRequest(tenant_id=TENANT))
    rotated = await client.RotateSigningSecret(
        pb.RotateSigningSecretRequest(tenant_id=TENANT)
    )
    other = await client.GetSigningSecret(pb.GetSigningSecretRequest(tenant_id=OTHER))

    assert first.secret == again.secret
    assert first.secret.startswith("whsec_")
    assert rotated.secret != first.secret
    assert rotated.HasField("previous_expires_at")
    assert not first.HasField("previous_expires_at")
    assert other.secret not in {first.secret, rotated.secret}


async def test_a_rotated_endpoint_is_signed_with_both_secrets_during_overlap(
    client, receiver: Receiver
) -> None:
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url)
    )
    rotated = await client.RotateEndpointSecret(
        pb.RotateEndpointSecretRequest(
            tenant_id=TENANT, endpoint_id=created.endpoint.id
        )
    )

    test = await client.TestEndpoint(
        pb.TestEndpointRequest(tenant_id=TENANT, endpoint_id=created.endpoint.id)
    )
    await eventually(lambda: len(receiver.received) == 1, what="the test delivery")

    (request,) = receiver.received
    assert request.headers["webhook-id"] == test.id
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (created.secret, rotated.secret):
        body = Webhook(secret).verify(request.body, request.headers)
        assert (body["type"], body["data"]) == ("webhook.test", None)


async def test_the_delivery_log_filters_and_refuses_bad_filters(
    client, receiver: Receiver
) -> None:
    created = await client.CreateEndpoint(
        pb.CreateEndpointRequest(tenant_id=TENANT, url=receiver.url)
    )
    receiver.default = 400
    test = await client.TestEndpoint(
        pb.TestEndpointRequest(tenant_id=TENANT, endpoint_id=created.endpoint.id)
    )

    async def dead() -> bool:
        found = await client.GetDelivery(
            pb.GetDeliveryRequest(tenant_id=TENANT, delivery_id=test.id)
        )
        return found.status == pb.DELIVERY_STATUS_DEAD

    await eventually(dead, what="the delivery dying")
    by_status = await client.ListDeliveries(
        pb.ListDeliveriesRequest(tenant_id=TENANT, status=pb.DELIVERY_STATUS_DEAD)
    )
    by_endpoint = await client.ListDeliveries(
        pb.ListDeliveriesRequest(tenant_id=TENANT, endpoint_id=created.endpoint.id)
    )
    succeeded = await client.ListDeliveries(
        pb.ListDeliveriesRequest(tenant_id=TENANT, status=pb.DELIVERY_STATUS_SUCCEEDED)
    )
    theirs = await refusal(
        client.GetDelivery(pb.GetDeliveryRequest(tenant_id=OTHER, delivery_id=test.id))
    )
    bad = await refusal(
        client.ListDeliveries(
            pb.ListDeliveriesRequest(tenant_id=TENANT, endpoint_id="nope")
        )
    )

    assert [d.id for d in by_status.deliveries] == [test.id]
    assert [d.id for d in by_endpoint.deliveries] == [test.id]
    assert by_status.deliveries[0].dead_reason == "answered 400"
    assert list(succeeded.deliveries) == []
    assert theirs.code() == grpc.StatusCode.NOT_FOUND
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(rpc_details(bad).fields) == {"endpoint_id"}
