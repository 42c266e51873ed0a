"""The OpenAPI tests' `env`: the app's client, its fakes, a job and a file."""

from __future__ import annotations

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

from ..fakes.auth import KEY_AUTH_DOWN
from .access_routes import EMAIL, PASSWORD
from .env import Env


@pytest.fixture
async def env(
    client,
    workflow,
    storage,
    notifier,
    object_store,
    auth,
    limiter,
    suspensions,
    probes,
    rpc_error,
    auth_a,
    auth_user,
    auth_admin,
    auth_no_scopes,
    tenant_a,
) -> Env:
    stored = storage.add_file(tenant_a, filename="a.png", key="outputs/a.png")
    job = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_COMPLETED,
        outputs=[wf.OutputFile(file_id=stored.id, node_id="9", filename="a.png")],
    )
    auth.passwords[EMAIL] = PASSWORD
    endpoint = notifier.add_endpoint(tenant_a)
    delivery = notifier.add_delivery(tenant_a, job_id=job.id, endpoint_id=endpoint.id)
    return Env(
        client=client,
        workflow=workflow,
        storage=storage,
        notifier=notifier,
        object_store=object_store,
        auth_service=auth,
        limiter=limiter,
        suspensions=suspensions,
        probes=probes,
        rpc_error=rpc_error,
        auth=auth_a,
        user=auth_user,
        admin=auth_admin,
        no_scopes=auth_no_scopes,
        auth_down={"Authorization": f"Bearer {KEY_AUTH_DOWN}"},
        tenant=tenant_a,
        job_id=job.id,
        file_id=stored.id,
        endpoint_id=endpoint.id,
        delivery_id=delivery.id,
    )
