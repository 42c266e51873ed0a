"""The partner-node key of a v2 submit goes to the workflow service on
SubmitJob and is never answered back (ADR 0006)."""

PARTNER_KEY = "comfyui-partner-secret-v2"


async def test_the_partner_key_is_passed_on_and_not_echoed(
    client, workflow, auth_a, api_workflow
) -> None:
    response = await client.post(
        "/api/v2/jobs",
        headers=auth_a,
        json={
            "workflow": api_workflow,
            "extra_data": {"api_key_comfy_org": PARTNER_KEY},
        },
    )

    assert response.status_code == 201, response.text
    assert PARTNER_KEY not in response.text
    [request] = workflow.requests
    assert request.partner_key == PARTNER_KEY
    job_id = response.json()["id"]
    for path in (f"/api/v2/jobs/{job_id}", f"/api/v2/jobs/{job_id}/workflow"):
        read = await client.get(path, headers=auth_a)
        assert read.status_code == 200, path
        assert PARTNER_KEY not in read.text


async def test_a_submit_without_a_partner_key_sends_none(
    client, workflow, auth_a, api_workflow
) -> None:
    response = await client.post(
        "/api/v2/jobs", headers=auth_a, json={"workflow": api_workflow}
    )

    assert response.status_code == 201
    [request] = workflow.requests
    assert not request.HasField("partner_key")


async def test_a_partner_key_that_is_not_a_string_is_400_naming_the_field(
    client, workflow, auth_a, api_workflow
) -> None:
    response = await client.post(
        "/api/v2/jobs",
        headers=auth_a,
        json={"workflow": api_workflow, "extra_data": {"api_key_comfy_org": 7}},
    )

    assert response.status_code == 400
    assert "api_key_comfy_org" in response.json()["error"]["message"]
    assert workflow.requests == []
