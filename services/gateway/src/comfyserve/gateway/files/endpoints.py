"""HTTP routes of files."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import RedirectResponse

from comfyserve.gateway.auth import Principal, Scope, require_scope
from comfyserve.gateway.files.models import FileMetadata
from comfyserve.gateway.files.service import FilesService
from comfyserve.gateway.links import LinksDep
from comfyserve.gateway.resources import ResourcesDep
from comfyserve.gateway.settings import Settings

router = APIRouter(prefix="/files", tags=["files"])

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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FileMetadata,
    responses={
        **_ERROR_RESPONSES,
        413: {"description": "The file is larger than the upload limit"},
        502: {"description": "The object store refused the bytes"},
    },
)
async def upload_file(
    file: Annotated[UploadFile, File(description="The file's bytes.")],
    response: Response,
    files: WriteFiles,
    content_type: Annotated[
        str | None,
        Form(max_length=127, description="Overrides the part's Content-Type."),
    ] = None,
) -> FileMetadata:
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
