"""ComfyUI as a child process of the executor, on a private port."""

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import structlog

from comfyserve.executor.engine.base import ClientEngine
from comfyserve.executor.engine.client import ClientTimeouts
from comfyserve.executor.engine.errors import EngineCrashed, EngineStartFailed
from comfyserve.executor.engine.files import ComfyDirs

log = structlog.get_logger(__name__)

_OUTPUT_TAIL_LINES = 20
_LINE_LIMIT = 1024 * 1024


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child: the kernel kills ComfyUI when the executor dies, even by
    SIGKILL, so a crashed worker never leaves an orphan holding the GPU."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _empty_folders(dirs: ComfyDirs) -> None:
    for folder in (dirs.input, dirs.output, dirs.temp):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedComfyUI(ClientEngine):
    """Starts `python main.py` from `comfyui_path` with its input, output and
    temp folders inside `work_dir`, so a job's files are ours to delete.

    `cpu` adds `--cpu`; the caller decides it (torch knows whether CUDA works).
    Each start picks a fresh free port, so `base_url` changes after `restart()`.
    """

    def __init__(
        self,
        comfyui_path: Path,
        python: Path,
        work_dir: Path,
        *,
        cpu: bool,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        start_timeout_s: float = 180.0,
        stop_grace_s: float = 10.0,
        ready_timeout_s: float = 5.0,
        timeouts: ClientTimeouts | None = None,
    ) -> None:
        work_dir = work_dir.resolve()
        # ComfyUI appends "temp" to --temp-directory.
        self._folders = ComfyDirs(
            input=work_dir / "input", output=work_dir / "output", temp=work_dir / "temp"
        )
        super().__init__(
            dirs=self._folders, timeouts=timeouts, ready_timeout_s=ready_timeout_s
        )
        self._comfyui_path = comfyui_path
        self._python = python
        self._work_dir = work_dir
        self._cpu = cpu
        self._host = host
        self._extra_args = tuple(extra_args)
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tail: deque[str] = deque(maxlen=_OUTPUT_TAIL_LINES)
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def crashed(self) -> bool:
        """True when the process exited without `stop()`/`restart()` asking."""
        return (
            self._process is not None
            and self._process.returncode is not None
            and not self._stopping
        )

    async def wait_exit(self) -> int:
        """Returns when the process exits; the caller restarts it if `crashed`."""
        if self._process is None:
            raise EngineStartFailed("ComfyUI was never started")
        return await self._process.wait()

    def _check_alive(self) -> None:
        if self._process is None or self._process.returncode is not None:
            raise EngineCrashed(self.returncode)

    def _argv(self, port: int) -> list[str]:
        dirs = self._folders
        argv = [
            str(self._python),
            "main.py",
            "--listen",
            self._host,
            "--port",
            str(port),
            "--input-directory",
            str(dirs.input),
            "--output-directory",
            str(dirs.output),
            "--temp-directory",
            str(self._work_dir),
            "--disable-auto-launch",
        ]
        if self._cpu:
            argv.append("--cpu")
        argv.extend(self._extra_args)
        return argv

    @property
    def local_roots(self) -> tuple[Path, ...]:
        """Where this engine keeps files: paths never to show a job's owner."""
        return (self._work_dir, self._comfyui_path.resolve())

    async def start(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        # Whatever an earlier run left (a kill skips every job's clean-up) goes:
        # no job may ever find another's files here.
        await asyncio.to_thread(_empty_folders, self._folders)
        port = _free_port(self._host)
        self._stopping = False
        self._tail.clear()
        self._process = await asyncio.create_subprocess_exec(
            *self._argv(port),
            cwd=self._comfyui_path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Own process group, so stop() reaches anything ComfyUI spawns.
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            limit=_LINE_LIMIT,
        )
        log.info("executor.comfyui.started", pid=self._process.pid, port=port)
        self._reader = asyncio.create_task(self._pump_output(self._process))
        await self._open_client(f"http://{self._host}:{port}", self._check_alive)
        try:
            await self._wait_ready(
                time.monotonic() + self._start_timeout_s, self._exit_reason
            )
        except BaseException:
            await self.stop()
            raise
        log.info("executor.comfyui.ready", pid=self._process.pid, port=port)

    def _exit_reason(self) -> str | None:
        code = self.returncode
        if code is None:
            return None
        tail = " | ".join(self._tail)
        return f"ComfyUI exited with code {code} while starting: {tail}"

    async def _pump_output(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stdout
        while stream is not None:
            try:
                raw = await stream.readline()
            except ValueError:
                # A line over the limit was discarded; keep reading.
                continue
            if not raw:
                break
            # Kept only to explain a failed start; never logged, since ComfyUI
            # prints prompt values and tracebacks with users' text.
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._tail.append(line[:500])
        code = await process.wait()
        if self._stopping:
            log.info("executor.comfyui.stopped", pid=process.pid, returncode=code)
        else:
            log.error("executor.comfyui.exited", pid=process.pid, returncode=code)

    def _signal_group(self, process: asyncio.subprocess.Process, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    async def _terminate(self, grace_s: float) -> None:
        process = self._process
        if process is not None:
            if process.returncode is None:
                self._signal_group(process, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), grace_s)
                except TimeoutError:
                    log.warning("executor.comfyui.kill", pid=process.pid)
            # Also reaches children left behind by a leader that already exited.
            self._signal_group(process, signal.SIGKILL)
            await process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None
        self._process = None

    async def stop(self) -> None:
        self._stopping = True
        await self._close_client()
        await self._terminate(self._stop_grace_s)

    async def restart(self) -> None:
        """Kill (a crashed or hung ComfyUI gets little grace) and start again."""
        log.info("executor.comfyui.restart", pid=self.pid, returncode=self.returncode)
        self._stopping = True
        await self._close_client()
        await self._terminate(min(self._stop_grace_s, 2.0))
        await self.start()
