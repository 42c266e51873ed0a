"""ComfyUI's queue routes: `/prompt`, `/queue`, `/interrupt` and `/history`.
The app mounts this router twice, at `/` and at `/api`, as ComfyUI does.

`POST /history` (clear or delete) answers 200 and changes nothing: the
history is the job record, which REST and Comfy API v2 callers still read, so
a native client cannot make it vanish for them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from comfyserve.contracts.workflow_format import PARTNER_KEY
from comfyserve.gateway.auth.services import Served, service
from comfyserve.gateway.jobs.endpoints import READ, WRITE
from comfyserve.gateway.native.answers import answer, empty, json_body
from comfyserve.gateway.native.service import (
    PENDING,
    RUNNING,
    NativeJobs,
    NativeRefusal,
    PromptRequest,
    canonical_id,
    prompt_error,
)
from comfyserve.gateway.native.shapes import history_entry, history_page, in_history

router = APIRouter(tags=["native"], include_in_schema=False)


def _native_jobs(served: Served) -> NativeJobs:
    resources = served.resources
    return NativeJobs(
        resources.workflow, resources.prompt_router, served.caller.tenant_id
    )


Reader = Annotated[NativeJobs, Depends(service(READ, _native_jobs))]
Writer = Annotated[NativeJobs, Depends(service(WRITE, _native_jobs))]


def _prompt_request(body: dict[str, Any]) -> PromptRequest:
    if "prompt" not in body:
        raise prompt_error("no_prompt", "No prompt provided", "No prompt provided")
    client_id = body.get("client_id") or ""
    prompt_id = body.get("prompt_id")
    if not isinstance(client_id, str):
        raise prompt_error("invalid_prompt", "client_id must be a string")
    if prompt_id is not None and (
        not isinstance(prompt_id, str) or canonical_id(prompt_id) is None
    ):
        raise prompt_error(
            "invalid_prompt_id",
            "Invalid prompt_id format",
            "prompt_id must be a canonical lowercase UUID",
        )
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise prompt_error("invalid_prompt", "extra_data must be an object")
    partner_key = extra_data.get(PARTNER_KEY)
    # The message names the field, never the value.
    if partner_key is not None and not isinstance(partner_key, str):
        raise prompt_error(
            "invalid_prompt", f"extra_data.{PARTNER_KEY} must be a string"
        )
    return PromptRequest(
        prompt=body["prompt"],
        client_id=client_id,
        prompt_id=prompt_id,
        front=body.get("front") is True,
        partner_key=partner_key or None,
    )


def _ids(value: Any) -> list[str]:
    return (
        [item for item in value if isinstance(item, str)]
        if isinstance(value, list)
        else []
    )


@router.post("/prompt")
async def queue_prompt(request: Request, jobs: Writer) -> Response:
    async def submit() -> dict[str, Any]:
        return await jobs.submit(_prompt_request(await json_body(request)))

    return await answer(submit())


@router.get("/prompt")
async def prompt_status(jobs: Reader) -> Response:
    async def status() -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": await jobs.queue_remaining()}}

    return await answer(status())


@router.get("/queue")
async def get_queue(jobs: Reader) -> Response:
    return await answer(jobs.queue())


@router.post("/queue")
async def change_queue(request: Request, jobs: Writer) -> Response:
    async def change() -> Response:
        body = await json_body(request)
        if body.get("clear") is True:
            await jobs.cancel_if(await jobs.ids_with(PENDING), [PENDING])
        await jobs.cancel_if(_ids(body.get("delete")), [PENDING])
        return empty()

    return await answer(change())


@router.post("/interrupt")
async def interrupt(request: Request, jobs: Writer) -> Response:
    """Interrupts the caller's running prompts, or only `prompt_id` when it
    is one of them; never another tenant's."""

    async def stop() -> Response:
        prompt_id = (await json_body(request)).get("prompt_id")
        if isinstance(prompt_id, str):
            targets = [prompt_id]
        else:
            targets = await jobs.ids_with(RUNNING)
        await jobs.cancel_if(targets, [RUNNING])
        return empty()

    return await answer(stop())


def _count(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise NativeRefusal(400, {"error": f"{name} must be a non-negative integer"})
    return number


@router.get("/history")
async def get_history(
    jobs: Reader,
    max_items: Annotated[str | None, Query()] = None,
    offset: Annotated[str | None, Query()] = None,
) -> Response:
    async def read() -> dict[str, Any]:
        found = await jobs.history(
            _count("max_items", max_items), _count("offset", offset)
        )
        return history_page(found)

    return await answer(read())


@router.get("/history/{prompt_id}")
async def get_history_entry(prompt_id: str, jobs: Reader) -> Response:
    async def read() -> dict[str, Any]:
        job = await jobs.find(prompt_id)
        if job is None or not in_history(job):
            return {}
        return {job.id: history_entry(job)}

    return await answer(read())


@router.post("/history")
async def change_history(request: Request, jobs: Writer) -> Response:
    async def change() -> Response:
        await json_body(request)
        return empty()

    return await answer(change())
