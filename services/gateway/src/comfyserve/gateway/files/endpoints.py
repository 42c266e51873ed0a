"""HTTP routes of files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile

from comfyserve.gateway.auth import Principal, Scope, require_scope
from comfyserve.gateway.errors import InvalidRequestError
from comfyserve.gateway.files.models import FileMetadata
from comfyserve.gateway.files.service import FilesService
from comfyserve.gateway.links import LinksDep
from comfyserve.gateway.resources import ResourcesDep
from comfyserve.gateway.settings import Settings

router = APIRouter(prefix="/files", tags=["files"])

MAX_CONTENT_TYPE_CHARS = 127

FilesReader = Annotated[Principal, Depends(require_scope(Scope.FILES_READ))]
FilesWriter = Annotated[Principal, Depends(require_scope(Scope.FILES_WRITE))]

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid credentials"},
    404: {"description": "No such file (or another tenant's)"},
    503: {"description": "A backing service is unavailable"},
}


def _service(
    principal: Principal, request: Request, resources: ResourcesDep, links: LinksDep
) -> FilesService:
    settings: Settings = request.app.state.settings
    return FilesService(
        resources.storage,
        resources.http,
        principal.tenant_id,
        links,
        settings.max_upload_bytes,
    )


def _reader_service(
    principal: FilesReader, request: Request, resources: ResourcesDep, links: LinksDep
) -> FilesService:
    return _service(principal, request, resources, links)


def _writer_service(
    principal: FilesWriter, request: Request, resources: ResourcesDep, links: LinksDep
) -> FilesService:
    return _service(principal, request, resources, links)


ReadFiles = Annotated[FilesService, Depends(_reader_service)]
WriteFiles = Annotated[FilesService, Depends(_writer_service)]


_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "content_type": {
                        "type": "string",
                        "maxLength": MAX_CONTENT_TYPE_CHARS,
                        "description": "Overrides the part's Content-Type.",
                    },
                },
            }
        }
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FileMetadata,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        **_ERROR_RESPONSES,
        413: {
            "description": (
                "The file is larger than `GATEWAY_MAX_UPLOAD_BYTES`; "
                "`limit_bytes` says how large it may be"
            )
        },
        422: {
            "description": (
                "No `file` part (`invalid_request`), an empty file "
                "(`empty_file`), or bytes that are not the declared image type "
                "(`content_type_mismatch`)"
            )
        },
        502: {"description": "The object store refused the bytes"},
    },
)
async def upload_file(
    request: Request, response: Response, files: WriteFiles
) -> FileMetadata:
    # Parsed here rather than as parameters so the principal is checked before
    # a single byte is spooled.
    async with request.form(
        max_files=1, max_fields=2, max_part_size=MAX_CONTENT_TYPE_CHARS
    ) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidRequestError("body.file", "A file part is required")
        content_type = form.get("content_type")
        if content_type is not None and not isinstance(content_type, str):
            raise InvalidRequestError("body.content_type", "Must be text")
        metadata = await files.upload(file, content_type)
    response.headers["Location"] = metadata.links.self
    return metadata


@router.get("/{file_id}", response_model=FileMetadata, responses=_ERROR_RESPONSES)
async def get_file(file_id: str, files: ReadFiles) -> FileMetadata:
    return await files.get(file_id)


@router.get(
    "/{file_id}/content",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    responses={
        307: {"description": "Redirects to a short-lived presigned URL"},
        **_ERROR_RESPONSES,
    },
)
async def get_file_content(file_id: str, files: ReadFiles) -> RedirectResponse:
    url = await files.download_url(file_id)
    return RedirectResponse(
        url,
        status_code=status.HTTP_307_TEMPORARY_REDIRECT,
        headers={"Cache-Control": "no-store"},
    )
