"""Reading native request bodies and writing native answers: ComfyUI's bodies
are loose JSON (unknown fields ignored, often none at all) and its refusals
are bare JSON, never the REST or v2 error envelope."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from comfyserve.gateway.bodies import nul_at
from comfyserve.gateway.native.service import NativeRefusal


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`, as ComfyUI reads a
    bodyless `POST /interrupt`."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise NativeRefusal(400, {"error": "The body is not valid JSON"}) from None
    if not isinstance(body, dict):
        raise NativeRefusal(400, {"error": "The body must be a JSON object"})
    # Postgres can store no NUL, in a graph or anywhere else.
    where = nul_at(body)
    if where is not None:
        raise NativeRefusal(400, {"error": f"A NUL character is not allowed: {where}"})
    return body


def empty() -> Response:
    """ComfyUI's 200 with an empty body."""
    return Response(status_code=200)


async def answer(work: Awaitable[Any]) -> Response:
    """What `work` answers (JSON, or a response of its own), or its refusal
    as ComfyUI answers it."""
    try:
        result = await work
    except NativeRefusal as refusal:
        return JSONResponse(refusal.body, status_code=refusal.status)
    return result if isinstance(result, Response) else JSONResponse(result)
