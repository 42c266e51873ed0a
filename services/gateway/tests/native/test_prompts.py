"""Native `/prompt`, `/queue`, `/interrupt` and `/history` over the fakes: the
shapes of API.md §B.1 and §B.2, and only the caller's own jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf

PREFIXES = ["", "/api"]
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_prompt_is_queued_with_its_id_and_client(
    client, auth_a, workflow, prompt_router, tenant_a, prefix
):
    prompt_id = str(uuid.uuid4())
    response = await client.post(
        f"{prefix}/prompt",
        headers=auth_a,
        json={
            "prompt": GRAPH,
            "client_id": "socket-1",
            "prompt_id": prompt_id,
            "extra_data": {"api_key_comfy_org": "secret-partner-key"},
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "prompt_id": prompt_id,
        "number": workflow.jobs[prompt_id].number,
        "node_errors": {},
    }
    [request] = workflow.requests
    assert isinstance(request, wf.SubmitJobRequest)
    assert (request.tenant_id, request.client_id) == (tenant_a, "socket-1")
    # Passed on for ComfyUI (ADR 0006), and not in the answer.
    assert request.partner_key == "secret-partner-key"
    assert "secret-partner-key" not in response.text
    assert prompt_router.announced == [(tenant_a, "socket-1", prompt_id)]


async def test_a_prompt_without_a_partner_key_sends_none(client, auth_a, workflow):
    await client.post("/prompt", headers=auth_a, json={"prompt": GRAPH})
    [request] = workflow.requests
    assert isinstance(request, wf.SubmitJobRequest)
    assert not request.HasField("partner_key")


async def test_a_partner_key_that_is_not_a_string_is_refused(client, auth_a, workflow):
    response = await client.post(
        "/prompt",
        headers=auth_a,
        json={"prompt": GRAPH, "extra_data": {"api_key_comfy_org": ["x"]}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_prompt"
    assert "api_key_comfy_org" in response.json()["error"]["message"]
    assert workflow.requests == []


async def test_front_jumps_the_queue(client, auth_a, workflow):
    await client.post("/prompt", headers=auth_a, json={"prompt": GRAPH, "front": True})
    [request] = workflow.requests
    assert isinstance(request, wf.SubmitJobRequest)
    assert request.priority == wf.PRIORITY_HIGH


async def test_a_missing_prompt_is_no_prompt(client, auth_a, workflow):
    response = await client.post("/prompt", headers=auth_a, json={"client_id": "c"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        },
        "node_errors": {},
    }
    assert workflow.calls == []


@pytest.mark.parametrize(
    "prompt_id", ["abc", str(uuid.uuid4()).upper(), uuid.uuid4().hex, 7]
)
async def test_a_prompt_id_that_is_no_canonical_uuid_is_refused(
    client, auth_a, workflow, prompt_id
):
    response = await client.post(
        "/prompt", headers=auth_a, json={"prompt": GRAPH, "prompt_id": prompt_id}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_prompt_id"
    assert response.json()["node_errors"] == {}
    assert workflow.calls == []


async def test_a_taken_prompt_id_is_409(client, auth_a, auth_b, workflow):
    prompt_id = str(uuid.uuid4())
    first = await client.post(
        "/prompt", headers=auth_b, json={"prompt": GRAPH, "prompt_id": prompt_id}
    )
    again = await client.post(
        "/prompt", headers=auth_a, json={"prompt": GRAPH, "prompt_id": prompt_id}
    )
    assert first.status_code == 200
    assert again.status_code == 409
    assert again.json() == {"error": "prompt_id already exists"}


async def test_validation_errors_keep_comfyuis_shape(client, auth_a, workflow):
    workflow.validation_errors = wf.ValidationErrors(
        error=wf.ErrorItem(
            type="prompt_outputs_failed_validation",
            message="Prompt outputs failed validation",
        ),
        node_errors={
            "1": wf.NodeError(
                errors=[
                    wf.ErrorItem(
                        type="value_smaller_than_min",
                        message="Value -5 smaller than min of 1",
                        details="width",
                        extra_info_json='{"input_name": "width", "received_value": -5}',
                    )
                ],
                dependent_outputs=["2"],
                class_type="EmptyImage",
            )
        },
    )
    response = await client.post("/prompt", headers=auth_a, json={"prompt": GRAPH})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "1": {
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value -5 smaller than min of 1",
                        "details": "width",
                        "extra_info": {"input_name": "width", "received_value": -5},
                    }
                ],
                "dependent_outputs": ["2"],
                "class_type": "EmptyImage",
            }
        },
    }


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
async def test_a_body_that_is_no_json_object_is_400(client, auth_a, body):
    response = await client.post(
        "/prompt", headers={**auth_a, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 400
    assert "error" in response.json()


async def test_queue_and_prompt_show_the_callers_jobs_only(
    client, auth_a, workflow, tenant_a, tenant_b
):
    running = workflow.add_job(
        tenant_a,
        status=wf.JOB_STATUS_RUNNING,
        workflow_json='{"1": {"class_type": "X", "inputs": {}}}',
        client_id="socket-1",
    )
    waiting = workflow.add_job(tenant_a, workflow_json="{}")
    workflow.add_job(tenant_b, status=wf.JOB_STATUS_RUNNING)
    workflow.add_job(tenant_a, status=wf.JOB_STATUS_COMPLETED)

    queue = (await client.get("/api/queue", headers=auth_a)).json()
    status = (await client.get("/prompt", headers=auth_a)).json()

    [item] = queue["queue_running"]
    assert item[:2] == [running.number, running.id]
    assert item[2] == {"1": {"class_type": "X", "inputs": {}}}
    assert item[3]["client_id"] == "socket-1"
    assert isinstance(item[3]["create_time"], int)
    assert item[4] == ["1"]
    assert [entry[1] for entry in queue["queue_pending"]] == [waiting.id]
    assert "client_id" not in queue["queue_pending"][0][3]
    assert status == {"exec_info": {"queue_remaining": 2}}


async def test_deleting_pending_prompts_cancels_only_those(
    client, auth_a, workflow, tenant_a, tenant_b
):
    mine = workflow.add_job(tenant_a)
    running = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    theirs = workflow.add_job(tenant_b)

    response = await client.post(
        "/queue",
        headers=auth_a,
        json={"delete": [mine.id, running.id, theirs.id, "junk"]},
    )

    assert (response.status_code, response.content) == (200, b"")
    assert workflow.jobs[mine.id].status == wf.JOB_STATUS_CANCELLED
    assert workflow.jobs[running.id].status == wf.JOB_STATUS_RUNNING
    assert not workflow.jobs[running.id].cancel_requested
    assert workflow.jobs[theirs.id].status == wf.JOB_STATUS_PENDING


async def test_clearing_the_queue_leaves_the_running_prompt(
    client, auth_a, workflow, tenant_a
):
    waiting = [workflow.add_job(tenant_a) for _ in range(2)]
    running = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)

    await client.post("/queue", headers=auth_a, json={"clear": True})

    assert all(workflow.jobs[j.id].status == wf.JOB_STATUS_CANCELLED for j in waiting)
    assert not workflow.jobs[running.id].cancel_requested


async def test_interrupt_stops_the_callers_running_prompts_only(
    client, auth_a, workflow, tenant_a, tenant_b
):
    mine = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    theirs = workflow.add_job(tenant_b, status=wf.JOB_STATUS_RUNNING)
    waiting = workflow.add_job(tenant_a)

    response = await client.post("/interrupt", headers=auth_a)

    assert (response.status_code, response.content) == (200, b"")
    assert workflow.jobs[mine.id].cancel_requested
    assert not workflow.jobs[theirs.id].cancel_requested
    assert workflow.jobs[waiting.id].status == wf.JOB_STATUS_PENDING


async def test_interrupt_with_a_prompt_id_acts_only_if_it_runs(
    client, auth_a, workflow, tenant_a
):
    first = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    second = workflow.add_job(tenant_a, status=wf.JOB_STATUS_RUNNING)
    waiting = workflow.add_job(tenant_a)

    await client.post("/interrupt", headers=auth_a, json={"prompt_id": waiting.id})
    assert not any(job.cancel_requested for job in workflow.jobs.values())
    assert workflow.jobs[waiting.id].status == wf.JOB_STATUS_PENDING

    await client.post("/api/interrupt", headers=auth_a, json={"prompt_id": second.id})
    assert workflow.jobs[second.id].cancel_requested
    assert not workflow.jobs[first.id].cancel_requested


def _ended(workflow, tenant, ts, status, **fields):
    return workflow.add_job(
        tenant,
        status=status,
        workflow_json='{"1": {"class_type": "X", "inputs": {}}}',
        started_at=ts(datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)),
        completed_at=ts(datetime(2030, 1, 1, 0, 0, 9, tzinfo=UTC)),
        **fields,
    )


async def test_history_of_a_success_lists_outputs_in_the_jobs_subfolder(
    client, auth_a, workflow, tenant_a, ts
):
    job = _ended(
        workflow,
        tenant_a,
        ts,
        wf.JOB_STATUS_COMPLETED,
        client_id="c1",
        outputs=[
            wf.OutputFile(
                node_id="1", index=0, filename="out_1_.png", kind=wf.OUTPUT_KIND_IMAGE
            ),
            wf.OutputFile(
                node_id="1", index=1, filename="sub/b.webm", kind=wf.OUTPUT_KIND_VIDEO
            ),
        ],
    )

    response = await client.get(f"/history/{job.id}", headers=auth_a)

    entry = response.json()[job.id]
    assert entry["prompt"][1] == job.id
    assert entry["prompt"][3]["client_id"] == "c1"
    assert entry["outputs"] == {
        "1": {
            "images": [
                {"filename": "out_1_.png", "subfolder": job.id, "type": "output"}
            ],
            "gifs": [
                {"filename": "b.webm", "subfolder": f"{job.id}/sub", "type": "output"}
            ],
        }
    }
    status = entry["status"]
    assert (status["status_str"], status["completed"]) == ("success", True)
    kinds = [message[0] for message in status["messages"]]
    assert kinds == ["execution_start", "execution_cached", "execution_success"]
    assert status["messages"][-1][1] == {
        "prompt_id": job.id,
        "timestamp": int(datetime(2030, 1, 1, 0, 0, 9, tzinfo=UTC).timestamp() * 1000),
    }
    assert entry["meta"]["1"]["node_id"] == "1"


async def test_history_of_a_failure_and_of_an_interrupt(
    client, auth_a, workflow, tenant_a, ts
):
    failed = _ended(
        workflow,
        tenant_a,
        ts,
        wf.JOB_STATUS_FAILED,
        error=wf.JobError(
            code="node_execution_error",
            message="boom",
            node_id="1",
            class_type="X",
            traceback="line 1\nline 2",
        ),
    )
    interrupted = _ended(
        workflow,
        tenant_a,
        ts,
        wf.JOB_STATUS_CANCELLED,
        progress=wf.Progress(node_id="1", class_type="X"),
    )

    failure = (await client.get(f"/history/{failed.id}", headers=auth_a)).json()
    stop = (await client.get(f"/history/{interrupted.id}", headers=auth_a)).json()

    status = failure[failed.id]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    kind, data = status["messages"][-1]
    assert kind == "execution_error"
    assert (data["node_id"], data["node_type"]) == ("1", "X")
    assert data["exception_message"] == "boom"
    assert data["traceback"] == ["line 1\n", "line 2"]
    assert {"executed", "exception_type", "current_inputs", "current_outputs"} <= set(
        data
    )
    last = stop[interrupted.id]["status"]["messages"][-1]
    assert last[0] == "execution_interrupted"
    assert stop[interrupted.id]["status"]["status_str"] == "error"


async def test_history_is_empty_for_waiting_unknown_others_and_dequeued(
    client, auth_a, workflow, tenant_a, tenant_b, ts
):
    waiting = workflow.add_job(tenant_a)
    dequeued = workflow.add_job(tenant_a, status=wf.JOB_STATUS_CANCELLED)
    theirs = _ended(workflow, tenant_b, ts, wf.JOB_STATUS_COMPLETED)

    for job_id in (waiting.id, dequeued.id, theirs.id, str(uuid.uuid4()), "abc"):
        response = await client.get(f"/history/{job_id}", headers=auth_a)
        assert (response.status_code, response.json()) == (200, {})
    listed = (await client.get("/history", headers=auth_a)).json()
    assert listed == {}


async def test_history_lists_the_newest_oldest_first_and_pages_by_offset(
    client, auth_a, workflow, tenant_a, ts
):
    jobs = [_ended(workflow, tenant_a, ts, wf.JOB_STATUS_COMPLETED) for _ in range(3)]

    newest = (await client.get("/history?max_items=2", headers=auth_a)).json()
    paged = (await client.get("/history?max_items=1&offset=1", headers=auth_a)).json()
    refused = await client.get("/history?max_items=x", headers=auth_a)

    assert list(newest) == [jobs[1].id, jobs[2].id]
    assert list(paged) == [jobs[1].id]
    assert refused.status_code == 400


async def test_post_history_changes_nothing(client, auth_a, workflow, tenant_a, ts):
    job = _ended(workflow, tenant_a, ts, wf.JOB_STATUS_COMPLETED)
    response = await client.post("/history", headers=auth_a, json={"clear": True})
    assert (response.status_code, response.content) == (200, b"")
    assert job.id in (await client.get("/history", headers=auth_a)).json()


async def test_an_unknown_class_is_a_whole_prompt_refusal(client, auth_a, workflow):
    workflow.validation_errors = wf.ValidationErrors(
        error=wf.ErrorItem(
            type="missing_node_type",
            message="Node 'Nope' not found.",
            details="Node ID '#4'",
            extra_info_json='{"node_id": "4", "class_type": "Nope"}',
        ),
        node_errors={"4": wf.NodeError(class_type="Nope")},
    )
    response = await client.post("/prompt", headers=auth_a, json={"prompt": GRAPH})

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "missing_node_type"
    assert body["error"]["extra_info"] == {"node_id": "4", "class_type": "Nope"}
    assert body["node_errors"] == {}
