"""Plain names in upload inputs resolve to the caller's own files, staged like
asset references; a name the tenant has no file of is `value_not_in_list`."""

import json
import uuid

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb

from .test_grpc_integration import submit, tenant

pytestmark = pytest.mark.integration

SAVE = {
    "class_type": "SaveImage",
    "inputs": {"images": ["3", 0], "filename_prefix": "x"},
}


def graph_with(make_workflow, name: str) -> str:
    return make_workflow(
        **{"3": {"class_type": "LoadImage", "inputs": {"image": name}}, "4": SAVE}
    )


async def staged_inputs(stub, tenant_id: str, job_id: str) -> list[pb.InputFile]:
    claim = await stub.ClaimJob(
        pb.ClaimJobRequest(tenant_id=tenant_id, job_id=job_id, worker_id="w-named")
    )
    return list(claim.assignment.inputs)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("photo.png", "photo.png"),
        ("sub/photo.png", "sub/photo.png"),
        ("sub/photo.png [input]", "sub/photo.png"),
    ],
)
async def test_a_plain_name_is_the_tenants_upload_of_that_path(
    stub, files, make_workflow, name, path
):
    tenant_id = tenant()
    stored = files.name(tenant_id, path)

    response = await submit(stub, tenant_id, graph_with(make_workflow, name))

    assert response.WhichOneof("result") == "job"
    # The stored graph keeps the name the client sent.
    assert json.loads(response.job.workflow_json)["3"]["inputs"]["image"] == name
    [staged] = await staged_inputs(stub, tenant_id, response.job.id)
    assert (staged.file_id, staged.node_id, staged.input_name) == (
        stored.file_id,
        "3",
        "image",
    )
    assert (staged.key, staged.filename) == (stored.key, "photo.png")


async def test_another_tenants_upload_of_the_name_is_not_in_list(
    stub, files, make_workflow
):
    owner, caller = tenant(), tenant()
    files.name(owner, "photo.png")

    response = await submit(stub, caller, graph_with(make_workflow, "photo.png"))

    assert response.WhichOneof("result") == "validation_errors"
    errors = response.validation_errors
    assert errors.error.type == "prompt_outputs_failed_validation"
    [item] = errors.node_errors["3"].errors
    assert item.type == "value_not_in_list"
    assert json.loads(item.extra_info_json)["received_value"] == "photo.png"
    assert list(errors.node_errors["3"].dependent_outputs) == ["4"]
    assert errors.node_errors["3"].class_type == "LoadImage"


async def test_an_earlier_jobs_output_is_staged_without_its_annotation(
    stub, files, make_workflow
):
    tenant_id = tenant()
    job = str(uuid.uuid4())
    output = files.name(tenant_id, "ComfyUI_00001_.png", folder="output", job=job)

    response = await submit(
        stub,
        tenant_id,
        graph_with(make_workflow, f"{job}/ComfyUI_00001_.png [output]"),
    )

    [staged] = await staged_inputs(stub, tenant_id, response.job.id)
    assert staged.file_id == output.file_id
    assert staged.filename == "ComfyUI_00001_.png"
    other = await submit(
        stub,
        tenant(),
        graph_with(make_workflow, f"{job}/ComfyUI_00001_.png [output]"),
    )
    assert other.WhichOneof("result") == "validation_errors"
