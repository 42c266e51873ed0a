"""A job names the trace its submit began."""

import uuid

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_traced_submit_names_its_trace_on_the_job(stub, make_workflow):
    tenant_id = f"tenant-{uuid.uuid4().hex[:8]}"
    caller = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)

    submitted = await stub.SubmitJob(
        pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=make_workflow()),
        metadata=caller,
    )
    read = await stub.GetJob(
        pb.GetJobRequest(tenant_id=tenant_id, job_id=submitted.job.id)
    )

    assert submitted.job.trace_id == read.trace_id == TRACE_ID


async def test_an_untraced_submit_has_no_trace_id(stub, make_workflow):
    tenant_id = f"tenant-{uuid.uuid4().hex[:8]}"

    submitted = await stub.SubmitJob(
        pb.SubmitJobRequest(tenant_id=tenant_id, workflow_json=make_workflow())
    )

    assert submitted.job.trace_id == ""
