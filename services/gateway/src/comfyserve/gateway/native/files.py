"""Native ComfyUI file routes: `/upload/image`, `/upload/mask`, `/view`, each
also under `/api` (API.md §B.1). Errors are native: empty bodies with 400,
403 or 404, not our JSON shape."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData, UploadFile

from comfyserve.gateway.auth.services import Served, service
from comfyserve.gateway.files.endpoints import READ, WRITE, files_service
from comfyserve.gateway.native.files_service import (
    NativeFiles,
    NativeRefusal,
    Uploaded,
    png_upload,
)

# API.md Part B is this surface's contract; our OpenAPI document describes the
# REST API only.
router = APIRouter(tags=["native"], include_in_schema=False)

MAX_TEXT_PART_BYTES = 4096
_TRUE = ("true", "1")


def _native_files(served: Served) -> NativeFiles:
    resources = served.resources
    return NativeFiles(
        resources.storage,
        resources.http,
        files_service(served),
        served.caller.tenant_id,
    )


ReadFiles = Annotated[NativeFiles, Depends(service(READ, _native_files))]
WriteFiles = Annotated[NativeFiles, Depends(service(WRITE, _native_files))]


def _field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default


def _answer(uploaded: Uploaded) -> JSONResponse:
    return JSONResponse(
        {"name": uploaded.name, "subfolder": uploaded.subfolder, "type": uploaded.type}
    )


async def upload_image(request: Request, files: WriteFiles) -> Response:
    async with request.form(max_files=1, max_part_size=MAX_TEXT_PART_BYTES) as form:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            return Response(status_code=400)
        try:
            uploaded = await files.upload(
                image,
                _field(form, "type", "input"),
                _field(form, "subfolder"),
                _field(form, "overwrite").lower() in _TRUE,
            )
        except NativeRefusal as refusal:
            return Response(status_code=refusal.status)
    return _answer(uploaded)


async def upload_mask(request: Request, files: WriteFiles) -> Response:
    async with request.form(max_files=1, max_part_size=MAX_TEXT_PART_BYTES) as form:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            return Response(status_code=400)
        try:
            original = json.loads(_field(form, "original_ref", "null"))
            if not isinstance(original, dict):
                return Response(status_code=400)
            merged = await files.masked(image, original)
            uploaded = await files.upload(
                png_upload(merged, image.filename or "mask.png"),
                _field(form, "type", "input"),
                _field(form, "subfolder"),
                _field(form, "overwrite").lower() in _TRUE,
            )
        except (NativeRefusal, ValueError) as refusal:
            status = refusal.status if isinstance(refusal, NativeRefusal) else 400
            return Response(status_code=status)
    return _answer(uploaded)


async def view(request: Request, files: ReadFiles) -> Response:
    query = request.query_params
    filename = query.get("filename")
    if not filename:
        return Response(status_code=404)
    try:
        info = await files.find(
            filename, query.get("type") or "output", query.get("subfolder") or ""
        )
        if info is None:
            return Response(status_code=404)
        name = filename.rsplit(" [", 1)[0] if filename.endswith("]") else filename
        return await files.view(info, name, request.headers.get("Range"))
    except NativeRefusal as refusal:
        return Response(status_code=refusal.status)


for _prefix in ("", "/api"):
    router.add_api_route(
        f"{_prefix}/upload/image",
        upload_image,
        methods=["POST"],
        summary="Upload an image (native)",
        response_class=Response,
    )
    router.add_api_route(
        f"{_prefix}/upload/mask",
        upload_mask,
        methods=["POST"],
        summary="Upload a mask into an image's alpha (native)",
        response_class=Response,
    )
    router.add_api_route(
        f"{_prefix}/view",
        view,
        methods=["GET"],
        summary="Download a file (native)",
        response_class=Response,
    )
