from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any, Protocol

from comfyserve.executor.engine.events import CancelOutcome, EngineEvent, OutputRef
from comfyserve.executor.engine.files import JobFiles


class Engine(Protocol):
    """The ComfyUI the executor drives: a managed child process, a remote URL,
    or a test fake."""

    @property
    def base_url(self) -> str: ...

    @property
    def local_roots(self) -> tuple[Path, ...]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def restart(self) -> None: ...

    async def ready(self) -> bool: ...

    async def object_info(self) -> dict[str, Any]: ...

    async def system_stats(self) -> dict[str, Any]: ...

    async def upload_input(self, data: bytes, filename: str, subfolder: str) -> str: ...

    def run(
        self,
        prompt: Mapping[str, Any],
        job_id: str,
        deadline: float,
        *,
        partner_key: str | None = None,
    ) -> AsyncGenerator[EngineEvent, None]:
        """Runs `prompt`; `partner_key` (a secret) goes into its `extra_data`
        for ComfyUI's partner nodes."""
        ...

    async def interrupt(self, prompt_id: str) -> CancelOutcome: ...

    async def fetch_output(self, ref: OutputRef) -> bytes: ...

    async def cleanup(self, files: JobFiles) -> None: ...
