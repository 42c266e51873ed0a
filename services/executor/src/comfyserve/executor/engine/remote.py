import time

from comfyserve.executor.engine.base import ClientEngine
from comfyserve.executor.engine.client import ClientTimeouts
from comfyserve.executor.engine.errors import RestartUnsupported
from comfyserve.executor.engine.files import ComfyDirs


class RemoteComfyUI(ClientEngine):
    """A ComfyUI someone else runs (e.g. a sidecar). `dirs` is given only when
    its folders are mounted here, which lets `cleanup` delete job files."""

    def __init__(
        self,
        url: str,
        *,
        dirs: ComfyDirs | None = None,
        start_timeout_s: float = 60.0,
        ready_timeout_s: float = 5.0,
        timeouts: ClientTimeouts | None = None,
    ) -> None:
        super().__init__(dirs=dirs, timeouts=timeouts, ready_timeout_s=ready_timeout_s)
        self._url = url
        self._start_timeout_s = start_timeout_s

    async def start(self) -> None:
        await self._open_client(self._url)
        try:
            await self._wait_ready(time.monotonic() + self._start_timeout_s)
        except BaseException:
            await self._close_client()
            raise

    async def stop(self) -> None:
        await self._close_client()

    async def restart(self) -> None:
        raise RestartUnsupported(f"{self._url} is not managed by this worker")
