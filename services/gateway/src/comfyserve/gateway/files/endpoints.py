"""HTTP routes of files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile

from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.auth.dependencies import Access
from comfyserve.gateway.auth.services import Served, service
from comfyserve.gateway.errors import InvalidRequestError
from comfyserve.gateway.files.models import FileMetadata
from comfyserve.gateway.files.service import FilesService
from comfyserve.gateway.limits.policy import RouteClass
from comfyserve.gateway.openapi.answers import (
    CONTENT_TYPE_MISMATCH,
    EMPTY_FILE,
    FILE_TOO_LARGE,
    MALFORMED_UPLOAD,
    MULTIPART_TOO_LARGE,
    NO_FILE_PART,
    UPLOAD_FAILED,
)
from comfyserve.gateway.openapi.responses import calls, error_responses, guarded

router = APIRouter(prefix="/files", tags=["files"])

MAX_CONTENT_TYPE_CHARS = 127

READ = Access(RouteClass.READ, Scope.FILES_READ)
WRITE = Access(RouteClass.UPLOAD, Scope.FILES_WRITE)


def files_service(served: Served) -> FilesService:
    """The caller's files, as every surface's file routes use them."""
    return FilesService(
        served.resources.storage,
        served.resources.http,
        served.caller.tenant_id,
        served.links,
        served.settings.max_upload_bytes,
    )


ReadFiles = Annotated[FilesService, Depends(service(READ, files_service))]
WriteFiles = Annotated[FilesService, Depends(service(WRITE, files_service))]


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
    summary="Upload a file",
    description=(
        "A `multipart/form-data` body with one `file` part of at most "
        "${max_upload_bytes} bytes (`GATEWAY_MAX_UPLOAD_BYTES`), the whole body "
        "at most ${max_multipart_bytes} bytes, and an optional `content_type` field of "
        f"at most {MAX_CONTENT_TYPE_CHARS} characters. The file's type is that "
        "field, else the part's own type, else a guess from its name. An image "
        "type Pillow reads must match the bytes; other types are stored as "
        "declared. Answers the file's metadata; use its id as a workflow input."
    ),
    responses=error_responses(
        MALFORMED_UPLOAD,
        *guarded(WRITE),
        MULTIPART_TOO_LARGE,
        FILE_TOO_LARGE,
        NO_FILE_PART,
        EMPTY_FILE,
        CONTENT_TYPE_MISMATCH,
        UPLOAD_FAILED,
        *calls("create_upload", "complete_upload"),
    ),
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


@router.get(
    "/{file_id}",
    response_model=FileMetadata,
    summary="Get a file's metadata",
    description="The file's name, type, size, SHA-256, dimensions and expiry.",
    responses=error_responses(*guarded(READ), *calls("get_file")),
)
async def get_file(file_id: str, files: ReadFiles) -> FileMetadata:
    return await files.get(file_id)


@router.get(
    "/{file_id}/content",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    summary="Download a file",
    description=(
        "Redirects (307) to a short-lived presigned URL of the object store, which "
        "serves the bytes; the redirect is never cached."
    ),
    responses={
        307: {"description": "Redirects to a short-lived presigned URL"},
        **error_responses(*guarded(READ), *calls("get_download_url")),
    },
)
async def get_file_content(file_id: str, files: ReadFiles) -> RedirectResponse:
    url = await files.download_url(file_id)
    return RedirectResponse(
        url,
        status_code=status.HTTP_307_TEMPORARY_REDIRECT,
        headers={"Cache-Control": "no-store"},
    )
