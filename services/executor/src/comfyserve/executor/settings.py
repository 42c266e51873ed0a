"""Settings of the executor, read from `EXECUTOR_*` environment variables."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from comfyserve.contracts.events import DEFAULT_POOL
from comfyserve.runtime.identity import AuthClientSettings


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class EngineMode(StrEnum):
    MANAGED = "managed"
    REMOTE = "remote"


class Settings(AuthClientSettings):
    model_config = SettingsConfigDict(env_prefix="EXECUTOR_")

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # The image this worker runs: its node catalog stands for the pool, and it
    # takes only jobs queued for the pool.
    pool: str = Field(default=DEFAULT_POOL, min_length=1, max_length=128)
    workflow_grpc_target: str = "127.0.0.1:50051"
    storage_grpc_target: str = "127.0.0.1:50052"
    # Managed mode: ComfyUI is started from this folder with this interpreter.
    comfyui_path: Path | None = None
    comfyui_python: Path = Field(default_factory=lambda: Path(sys.executable))
    # Remote mode: a ComfyUI someone else runs.
    comfyui_url: str | None = None
    worker_id: str = Field(default_factory=default_worker_id, min_length=1)
    # Unset: a folder of this worker's own under the system's temp folder, so
    # two workers on one machine never share ComfyUI folders.
    scratch_dir: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=9104, ge=0, le=65535)
    heartbeat_interval_seconds: float = Field(default=2.0, gt=0)
    progress_interval_seconds: float = Field(default=0.5, ge=0)
    # At most one sampler preview per job this often is stored (as a
    # short-lived file) and named on a progress event; 0 stores none.
    preview_interval_seconds: float = Field(default=1.0, ge=0)
    # How long one AcquireJob waits for a job before asking again.
    acquire_wait_seconds: float = Field(default=20.0, gt=0)
    # Jobs taken ahead while ComfyUI runs the current one: their inputs are
    # staged and their prompts queued behind it. 0 takes one job at a time.
    prefetch: int = Field(default=0, ge=0, le=1)
    interrupt_grace_seconds: float = Field(default=10.0, gt=0)
    watchdog_interval_seconds: float = Field(default=5.0, gt=0)
    grpc_timeout_seconds: float = Field(default=10.0, gt=0)
    transfer_timeout_seconds: float = Field(default=300.0, gt=0)
    # Unset: decided by torch (no CUDA → ComfyUI runs with --cpu).
    cpu: bool | None = None

    @model_validator(mode="after")
    def _one_engine_mode(self) -> Settings:
        if (self.comfyui_path is None) == (self.comfyui_url is None):
            raise ValueError(
                "set exactly one of EXECUTOR_COMFYUI_PATH (managed ComfyUI) "
                "or EXECUTOR_COMFYUI_URL (remote ComfyUI)"
            )
        return self

    @property
    def engine_mode(self) -> EngineMode:
        return (
            EngineMode.MANAGED if self.comfyui_path is not None else EngineMode.REMOTE
        )

    @property
    def scratch(self) -> Path:
        if self.scratch_dir is not None:
            return self.scratch_dir
        return Path(tempfile.gettempdir()) / "comfyserve-executor" / self.worker_id
