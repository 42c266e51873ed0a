"""Storing an attempt's outputs: each file a node saved is read from the engine,
measured, and recorded and uploaded through the storage service once, up to
the number of outputs a job may have."""

from __future__ import annotations

import hashlib
import io

import structlog
from PIL import Image

from comfyserve.contracts.events import OutputFile
from comfyserve.contracts.events import OutputKind as ContractOutputKind
from comfyserve.contracts.limits import MAX_OUTPUTS_PER_JOB
from comfyserve.executor.engine import Engine, OutputKind, OutputRef
from comfyserve.executor.jobs.models import NewOutput
from comfyserve.executor.jobs.ports import FileStore
from comfyserve.executor.jobs.state import JobState, StopReason
from comfyserve.executor.telemetry import tracer

log = structlog.get_logger(__name__)


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return width, height


class OutputStorer:
    """Stores the outputs of the attempt it is given."""

    def __init__(self, engine: Engine, files: FileStore) -> None:
        self._engine = engine
        self._files = files

    async def store_new(
        self, state: JobState, refs: tuple[OutputRef, ...]
    ) -> list[OutputFile]:
        """Stores the refs not stored yet, never a preview; past the job's limit
        it stores no more and stops the attempt."""
        stored: list[OutputFile] = []
        for ref in refs:
            if ref.is_preview or (ref.node_id, ref.index) in state.stored:
                continue
            if len(state.stored) >= MAX_OUTPUTS_PER_JOB:
                state.request_stop(StopReason.OUTPUT_LIMIT)
                break
            stored.append(await self._store(state, ref))
        return stored

    async def _store(self, state: JobState, ref: OutputRef) -> OutputFile:
        data = await self._engine.fetch_output(ref)
        size = _image_size(data) if ref.kind == OutputKind.IMAGE else None
        with tracer.start_as_current_span(
            "executor.output.upload",
            attributes={
                "comfyui.node.id": ref.node_id,
                "comfyserve.output.index": ref.index,
                "comfyserve.output.bytes": len(data),
            },
        ):
            output = await self._files.store_output(
                state.tenant_id,
                NewOutput(
                    job_id=state.job_id,
                    attempt=state.attempt,
                    node_id=ref.node_id,
                    index=ref.index,
                    filename=ref.filename,
                    kind=ContractOutputKind(ref.kind.value),
                    content_type=ref.content_type,
                    data=data,
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=None if size is None else size[0],
                    height=None if size is None else size[1],
                ),
            )
        state.stored[(ref.node_id, ref.index)] = output
        log.info(
            "executor.job.output_stored",
            job_id=state.job_id,
            node_id=ref.node_id,
            index=ref.index,
            file_id=output.file_id,
        )
        return output
