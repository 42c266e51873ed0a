"""ComfyUI's WebSocket, `/ws` and `/api/ws` (API.md §B.5), fed from our jobs.

A socket registers under its `clientId` (a fresh 32-hex id when absent) within
the caller's tenant. The prompt router tells it of each prompt queued with that
client id, on any replica; the socket then follows the job's WatchJob stream
and sends its messages (`ws_frames`). `status` frames reach every socket of the
tenant. A newer socket with the same id replaces this one, which then closes.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl, urlencode

import grpc
import structlog
from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.auth.dependencies import Access, Caller
from comfyserve.gateway.errors import GatewayError, error_body
from comfyserve.gateway.jobs.previews import Preview, fetch_preview
from comfyserve.gateway.limits.policy import RouteClass
from comfyserve.gateway.native.routing import (
    Notice,
    PromptQueued,
    QueueChanged,
    Replaced,
)
from comfyserve.gateway.native.service import ACTIVE, NativeJobs
from comfyserve.gateway.native.ws_frames import (
    Frame,
    PreviewWanted,
    PromptFrames,
    QueueMoved,
    message,
)
from comfyserve.gateway.resources import Resources
from comfyserve.gateway.settings import Settings

log = structlog.get_logger(__name__)

router = APIRouter()

_ACCESS = Access(RouteClass.READ, Scope.WORKFLOWS_READ)
# Binary frame types and image formats of ComfyUI's protocol (§B.5.4).
_PREVIEW_IMAGE = 1
_PREVIEW_WITH_METADATA = 4
_JPEG, _PNG = 1, 2


@router.websocket("/ws")
@router.websocket("/api/ws")
async def native_socket(
    websocket: WebSocket,
    admission: Annotated[Caller | GatewayError, Depends(_ACCESS.on_socket)],
) -> None:
    client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
    _forget_token(websocket)
    if isinstance(admission, GatewayError):
        # Refused in the handshake, with the HTTP answer any route would give.
        body = error_body(admission.code, admission.detail, **admission.extra)
        await websocket.send_denial_response(
            JSONResponse(
                body, status_code=admission.status_code, headers=admission.headers
            )
        )
        return
    resources = cast(Resources, websocket.state.resources)
    socket = NativeSocket(websocket, resources, admission.tenant_id, client_id)
    await socket.run()


def _forget_token(websocket: WebSocket) -> None:
    """Drops a `token` from the query the server logs the handshake with
    (uvicorn logs the path and query of every WebSocket it accepts or refuses,
    and masks nothing)."""
    query = websocket.scope.get("query_string", b"").decode("latin-1")
    kept = [
        (name, value)
        for name, value in parse_qsl(query, keep_blank_values=True)
        if name != "token"
    ]
    websocket.scope["query_string"] = urlencode(kept).encode("latin-1")


class NativeSocket:
    def __init__(
        self,
        websocket: WebSocket,
        resources: Resources,
        tenant_id: str,
        client_id: str,
    ) -> None:
        self._ws = websocket
        self._resources = resources
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._socket_id = uuid.uuid4().hex
        self._jobs = NativeJobs(resources.workflow, resources.prompt_router, tenant_id)
        self._send_lock = asyncio.Lock()
        self._followed: dict[str, asyncio.Task[None]] = {}
        self._preview_metadata = False

    async def run(self) -> None:
        router = self._resources.prompt_router
        listening = router.listen(self._tenant_id, self._client_id, self._socket_id)
        # Subscribed before accepting, so no prompt queued after the hello is
        # missed.
        async with listening as notices:
            await self._ws.accept()
            log.info("gateway.ws.opened", tenant_id=self._tenant_id)
            await self._send(await self._hello())
            await self._adopt()
            tasks = {
                asyncio.create_task(self._receive()),
                asyncio.create_task(self._listen(notices)),
            }
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in [*tasks, *self._followed.values()]:
                    task.cancel()
                await asyncio.gather(
                    *tasks, *self._followed.values(), return_exceptions=True
                )
            log.info("gateway.ws.closed", tenant_id=self._tenant_id)
            for task in done:
                if not isinstance(task.exception(), WebSocketDisconnect | None):
                    raise cast(BaseException, task.exception())

    async def _hello(self) -> dict[str, Any]:
        hello = self._status(await self._jobs.queue_remaining())
        hello["data"]["sid"] = self._client_id
        return hello

    @staticmethod
    def _status(remaining: int) -> dict[str, Any]:
        return message("status", status={"exec_info": {"queue_remaining": remaining}})

    async def _adopt(self) -> None:
        """Follows this client id's prompts already queued or running, as
        ComfyUI routes them to whichever socket holds the id now."""
        listing = await self._jobs.listing(ACTIVE, with_graph=False)
        for job in listing.jobs:
            if job.client_id == self._client_id:
                self._follow(job.id, adopted=job.status == wf.JOB_STATUS_RUNNING)

    async def _receive(self) -> None:
        """Client messages: only the `feature_flags` handshake is answered."""
        while True:
            text = await self._ws.receive_text()
            try:
                sent = json.loads(text)
            except ValueError:
                continue
            if isinstance(sent, dict) and sent.get("type") == "feature_flags":
                flags = sent.get("data")
                self._preview_metadata = isinstance(flags, dict) and bool(
                    flags.get("supports_preview_metadata")
                )
                await self._send(self._feature_flags())

    def _feature_flags(self) -> dict[str, Any]:
        settings: Settings = self._ws.app.state.settings
        return message(
            "feature_flags",
            supports_preview_metadata=True,
            max_upload_size=settings.max_upload_bytes,
        )

    async def _listen(self, notices: AsyncIterator[Notice]) -> None:
        async for notice in notices:
            if not await self._on(notice):
                return

    async def _on(self, notice: Notice) -> bool:
        """Handles one notice; False once this socket was replaced."""
        if isinstance(notice, QueueChanged):
            await self._send_status()
        elif isinstance(notice, PromptQueued):
            self._follow(notice.prompt_id, adopted=False)
        elif isinstance(notice, Replaced):
            await self._ws.close(code=1000, reason="replaced by a newer connection")
            return False
        return True

    def _follow(self, prompt_id: str, *, adopted: bool) -> None:
        if prompt_id not in self._followed:
            self._followed[prompt_id] = asyncio.create_task(
                self._follow_job(PromptFrames(prompt_id, adopted=adopted))
            )

    async def _follow_job(self, frames: PromptFrames) -> None:
        updates = self._resources.workflow.watch_job(
            wf.WatchJobRequest(tenant_id=self._tenant_id, job_id=frames.prompt_id)
        )
        try:
            async with aclosing(updates):
                async for update in updates:
                    for frame in frames.feed(update):
                        await self._emit(frames.prompt_id, frame)
                    if frames.done:
                        return
        except grpc.aio.AioRpcError as error:
            log.warning(
                "gateway.ws.watch_failed",
                prompt_id=frames.prompt_id,
                grpc_code=error.code().name,
            )

    async def _emit(self, prompt_id: str, frame: Frame) -> None:
        if isinstance(frame, QueueMoved):
            await self._send_status()
            await self._resources.prompt_router.queue_changed(
                self._tenant_id, origin=self._socket_id
            )
        elif isinstance(frame, PreviewWanted):
            await self._send_preview(prompt_id, frame)
        else:
            await self._send(frame)

    async def _send_status(self) -> None:
        await self._send(self._status(await self._jobs.queue_remaining()))

    async def _send(self, sent: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._ws.send_json(sent)

    async def _send_preview(self, prompt_id: str, wanted: PreviewWanted) -> None:
        found = await fetch_preview(
            self._resources.storage,
            self._resources.http,
            self._tenant_id,
            wanted.file_id,
        )
        if found is None:
            return
        frame = self._preview_frame(prompt_id, wanted, found)
        async with self._send_lock:
            await self._ws.send_bytes(frame)

    def _preview_frame(
        self, prompt_id: str, wanted: PreviewWanted, found: Preview
    ) -> bytes:
        content_type = found.content_type
        if not self._preview_metadata:
            image_format = _JPEG if "jpeg" in content_type else _PNG
            return struct.pack(">II", _PREVIEW_IMAGE, image_format) + found.data
        metadata = json.dumps(
            {
                "node_id": wanted.node_id,
                "prompt_id": prompt_id,
                "display_node_id": wanted.node_id,
                "parent_node_id": None,
                "real_node_id": wanted.node_id,
                "image_type": content_type,
            }
        ).encode()
        head = struct.pack(">II", _PREVIEW_WITH_METADATA, len(metadata))
        return head + metadata + found.data
