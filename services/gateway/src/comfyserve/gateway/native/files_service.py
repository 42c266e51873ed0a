"""Native ComfyUI files (API.md §B.1 `/upload/image`, `/upload/mask`, `/view`)
over the caller's own storage files.

Uploads are the tenant's client files named `<subfolder>/<name>` in a native
folder (`input`, `temp`, `output`); a job's outputs are served under the
shared convention `subfolder = <job id>[/<sub>]`. Another tenant's file
answers like a missing one.
"""

from __future__ import annotations

import io
import mimetypes
import posixpath
import uuid
from dataclasses import dataclass

import anyio.to_thread
import grpc
import httpx
from fastapi import Response
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import Headers, UploadFile

from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.errors import UploadFailedError
from comfyserve.gateway.files.service import FilesService, Placement
from comfyserve.gateway.files.streaming import ObjectGone, stream_file

FOLDERS = ("input", "temp", "output")
ANNOTATIONS = {f" [{folder}]": folder for folder in FOLDERS}
# Types a browser would run: served as attachments (G3 does the same).
_ACTIVE_TYPES = ("text/html", "image/svg+xml", "application/javascript", "text/xml")
MAX_RENAMES = 1000


class NativeRefusal(Exception):
    """An answer native ComfyUI gives with an empty body (400, 403, 404)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def clean_subfolder(raw: str, refusal: int) -> str:
    """The subfolder as a relative path; `refusal` when it leaves its folder."""
    value = raw.strip().replace("\\", "/").strip("/") if raw else ""
    if raw.startswith(("/", "\\")) or any(
        part in (".", "..") for part in value.split("/")
    ):
        raise NativeRefusal(refusal)
    return "/".join(part for part in value.split("/") if part)


def joined(subfolder: str, name: str) -> str:
    return f"{subfolder}/{name}" if subfolder else name


def renamed(name: str, number: int) -> str:
    stem, ext = posixpath.splitext(name)
    return f"{stem} ({number}){ext}"


@dataclass(frozen=True, slots=True)
class Uploaded:
    name: str
    subfolder: str
    type: str


class NativeFiles:
    def __init__(
        self,
        storage: StorageClient,
        http: httpx.AsyncClient,
        files: FilesService,
        tenant_id: str,
    ) -> None:
        self._storage = storage
        self._http = http
        self._files = files
        self._tenant_id = tenant_id

    async def named(self, folder: str, path: str) -> st.FileInfo | None:
        try:
            return await self._storage.find_named_file(
                st.FindNamedFileRequest(
                    tenant_id=self._tenant_id, folder=folder, path=path
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT,
            ):
                return None
            raise

    async def upload(
        self, image: UploadFile, folder: str, subfolder: str, overwrite: bool
    ) -> Uploaded:
        name = posixpath.basename((image.filename or "").replace("\\", "/"))
        if not name or ".." in (image.filename or "").split("/"):
            raise NativeRefusal(400)
        folder = folder if folder in FOLDERS else "input"
        sub = clean_subfolder(subfolder, 400)
        replaced = await self.named(folder, joined(sub, name))
        if replaced is not None and not overwrite:
            name = await self._free_name(folder, sub, name)
            replaced = None
        inspected = await self._files.inspect(image, None)
        info = await self._files.store(
            image, inspected, Placement(folder, joined(sub, name))
        )
        if replaced is not None:
            await self._storage.delete_file(
                st.DeleteFileRequest(tenant_id=self._tenant_id, file_id=replaced.id)
            )
        stored_sub, _, stored_name = info.path.rpartition("/")
        return Uploaded(name=stored_name, subfolder=stored_sub, type=folder)

    async def _free_name(self, folder: str, sub: str, name: str) -> str:
        # As native ComfyUI: `x (1).png`, `x (2).png`, ... the first unused.
        for number in range(1, MAX_RENAMES):
            candidate = renamed(name, number)
            if await self.named(folder, joined(sub, candidate)) is None:
                return candidate
        raise NativeRefusal(400)

    async def masked(self, mask: UploadFile, original: dict[str, object]) -> bytes:
        """The original image with the mask's alpha as its own, as PNG bytes."""
        filename = original.get("filename")
        if not isinstance(filename, str):
            raise NativeRefusal(400)
        sub = original.get("subfolder")
        kind = original.get("type")
        info = await self.find(
            filename,
            kind if isinstance(kind, str) else "input",
            sub if isinstance(sub, str) else "",
        )
        if info is None:
            raise NativeRefusal(404)
        link = await self._storage.get_download_url(
            st.GetDownloadUrlRequest(tenant_id=self._tenant_id, file_id=info.id)
        )
        try:
            response = await self._http.get(link.url)
        except httpx.HTTPError as error:
            # Only the type: the URL carries a signature.
            raise UploadFailedError(
                f"The object store could not be reached ({type(error).__name__})"
            ) from None
        if response.status_code != 200:
            raise NativeRefusal(404)
        await mask.seek(0)
        return await anyio.to_thread.run_sync(
            _merge_alpha, response.content, await mask.read()
        )

    async def find(
        self, filename: str, kind: str, subfolder: str
    ) -> st.FileInfo | None:
        """The file `/view` names; NativeRefusal for names that leave their folder."""
        for suffix, folder in ANNOTATIONS.items():
            if filename.endswith(suffix):
                filename, kind = filename[: -len(suffix)], folder
        if filename.startswith("/") or ".." in filename.replace("\\", "/").split("/"):
            raise NativeRefusal(400)
        sub = clean_subfolder(subfolder, 403)
        if kind == "output":
            job, _, rest = sub.partition("/")
            found = await self._output(job, joined(rest, filename))
            if found is not None:
                return found
        return await self.named(
            kind if kind in FOLDERS else "output", joined(sub, filename)
        )

    async def _output(self, job: str, name: str) -> st.FileInfo | None:
        """The job's ready output of this name, of its newest attempt."""
        try:
            job_id = str(uuid.UUID(job))
        except ValueError:
            return None
        best: st.FileInfo | None = None
        cursor = ""
        while True:
            page = await self._storage.list_files(
                st.ListFilesRequest(
                    tenant_id=self._tenant_id, job_id=job_id, cursor=cursor
                )
            )
            for info in page.files:
                if (
                    info.purpose == st.FILE_PURPOSE_OUTPUT
                    and info.state == st.FILE_STATE_READY
                    and info.filename == name
                    and (best is None or info.attempt > best.attempt)
                ):
                    best = info
            if not page.next_cursor:
                return best
            cursor = page.next_cursor

    async def view(
        self, info: st.FileInfo, name: str, range_header: str | None
    ) -> Response:
        media_type = mimetypes.guess_type(name, strict=False)[0] or info.content_type
        disposition = "attachment" if media_type in _ACTIVE_TYPES else "inline"
        quoted = name.replace('"', "_")
        headers = {
            "Content-Type": media_type,
            "Content-Disposition": f'{disposition}; filename="{quoted}"',
            "X-Content-Type-Options": "nosniff",
        }
        try:
            return await stream_file(
                self._storage, self._http, info, range_header, headers
            )
        except ObjectGone:
            raise NativeRefusal(404) from None


def _merge_alpha(original: bytes, mask: bytes) -> bytes:
    try:
        with (
            Image.open(io.BytesIO(original)) as base,
            Image.open(io.BytesIO(mask)) as m,
        ):
            merged = base.convert("RGBA")
            alpha = m.convert("RGBA").resize(merged.size).getchannel("A")
            merged.putalpha(alpha)
            out = io.BytesIO()
            merged.save(out, format="PNG", compress_level=4)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError):
        raise NativeRefusal(400) from None


def png_upload(data: bytes, filename: str) -> UploadFile:
    """Bytes made here, as an upload the files service can inspect and store."""
    return UploadFile(
        io.BytesIO(data),
        size=len(data),
        filename=filename,
        headers=Headers({"content-type": "image/png"}),
    )
