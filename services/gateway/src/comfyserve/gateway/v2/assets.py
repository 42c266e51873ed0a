"""HTTP routes of Comfy API v2 assets (API.md §A.3.7-A.3.12); the logic is in
`assets_service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from starlette.datastructures import UploadFile

from comfyserve.gateway.auth.services import Served, service
from comfyserve.gateway.bodies import RequestBody
from comfyserve.gateway.errors import InvalidRequestError
from comfyserve.gateway.files.endpoints import READ, WRITE, files_service
from comfyserve.gateway.v2.assets_service import AssetsService, normal_hash
from comfyserve.gateway.v2.models import Asset

# API.md §A.3 is this surface's contract, as for the rest of `/api/v2`; our
# own OpenAPI document describes the REST API only.
router = APIRouter(prefix="/api/v2/assets", tags=["v2 assets"], include_in_schema=False)

MAX_TEXT_PART_BYTES = 4096
MAX_PARTS = 64


def _assets(served: Served) -> AssetsService:
    resources = served.resources
    return AssetsService(
        resources.storage,
        resources.http,
        files_service(served),
        served.caller.tenant_id,
        served.links,
    )


ReadAssets = Annotated[AssetsService, Depends(service(READ, _assets))]
WriteAssets = Annotated[AssetsService, Depends(service(WRITE, _assets))]


class FromHash(RequestBody):
    hash: str
    file_path: str | None = None
    tags: list[str] | None = None
    expires_in: int | None = None


def _text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(field, "must be a text part")
    return value


@router.post(
    "",
    response_model=Asset,
    response_model_exclude_none=False,
    status_code=status.HTTP_201_CREATED,
    summary="Upload an asset",
    description=(
        "Multipart parts `content_type`, `file_path`, optional `expected_hash`, "
        "`tags` and `expires_in`, and `file`, in any order. 201 with "
        "`created_new: true` for new bytes; 200 with `created_new: false` when "
        "the tenant already stores bytes of this BLAKE3 hash (nothing uploaded "
        "again); 409 `hash_mismatch` when `expected_hash` differs."
    ),
)
async def upload_asset(
    request: Request, response: Response, assets: WriteAssets
) -> Asset:
    async with request.form(
        max_files=1, max_fields=MAX_PARTS, max_part_size=MAX_TEXT_PART_BYTES
    ) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidRequestError("file", "A file part is required")
        file_path = _text(form.get("file_path"), "file_path") or file.filename
        if not file_path:
            raise InvalidRequestError("file_path", "is required")
        expires = _text(form.get("expires_in"), "expires_in")
        try:
            expires_in = int(expires) if expires is not None else None
        except ValueError:
            raise InvalidRequestError("expires_in", "must be an integer") from None
        committed = await assets.upload(
            file,
            content_type=_text(form.get("content_type"), "content_type"),
            file_path=file_path,
            expected_hash=_text(form.get("expected_hash"), "expected_hash"),
            expires_in=expires_in,
        )
    if not committed.created_new:
        response.status_code = status.HTTP_200_OK
    return committed.asset


@router.head(
    "/by-hash/{blake3_hash:path}",
    summary="Whether the tenant stores bytes of a hash",
    description="200 or 404, without a body; `blake3:` may be percent-encoded.",
)
async def head_by_hash(blake3_hash: str, assets: ReadAssets) -> Response:
    digest = normal_hash(blake3_hash)
    found = digest is not None and await assets.has_blob(digest)
    return Response(status_code=200 if found else 404)


@router.post(
    "/from-hash",
    response_model=Asset,
    status_code=status.HTTP_201_CREATED,
    summary="Mint an asset over stored bytes",
    description=(
        "201 for a new asset over the tenant's bytes of `hash`; 200 when the "
        "same asset already exists; 404 `blob_not_found` otherwise."
    ),
)
async def from_hash(body: FromHash, response: Response, assets: WriteAssets) -> Asset:
    committed = await assets.from_hash(body.hash, body.file_path, body.expires_in)
    if not committed.created_new:
        response.status_code = status.HTTP_200_OK
    return committed.asset


@router.get("/{asset_id}", response_model=Asset, summary="Get an asset")
async def get_asset(asset_id: str, assets: ReadAssets) -> Asset:
    return assets.asset(await assets.get(asset_id))


@router.get(
    "/{asset_id}/content",
    response_class=Response,
    summary="Download an asset's bytes",
    description=(
        "The bytes, streamed through the gateway: 200, or 206 for one "
        "`Range: bytes=a-b`, 416 with `Content-Range: bytes */<size>` past the end."
    ),
)
async def get_asset_content(
    asset_id: str,
    assets: ReadAssets,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    return await assets.content(asset_id, range_header)


@router.delete(
    "/{asset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an asset",
)
async def delete_asset(asset_id: str, assets: WriteAssets) -> Response:
    await assets.delete(asset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
