from pathlib import Path

import pytest
from pydantic import ValidationError

from comfyserve.executor.settings import EngineMode, Settings


def test_managed_mode_needs_only_a_path(monkeypatch):
    monkeypatch.setenv("EXECUTOR_COMFYUI_PATH", "/opt/ComfyUI")
    monkeypatch.delenv("EXECUTOR_COMFYUI_URL", raising=False)

    settings = Settings()

    assert settings.engine_mode == EngineMode.MANAGED
    assert settings.comfyui_path == Path("/opt/ComfyUI")
    assert settings.consumer_group == "executor"
    assert settings.http_port == 9104


def test_remote_mode(monkeypatch):
    monkeypatch.delenv("EXECUTOR_COMFYUI_PATH", raising=False)
    monkeypatch.setenv("EXECUTOR_COMFYUI_URL", "http://comfy:8188")

    assert Settings().engine_mode == EngineMode.REMOTE


@pytest.mark.parametrize(
    "env",
    [{}, {"EXECUTOR_COMFYUI_PATH": "/c", "EXECUTOR_COMFYUI_URL": "http://c:1"}],
)
def test_exactly_one_engine_mode(monkeypatch, env):
    monkeypatch.delenv("EXECUTOR_COMFYUI_PATH", raising=False)
    monkeypatch.delenv("EXECUTOR_COMFYUI_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(ValidationError, match="exactly one of"):
        Settings()


def test_poll_interval_outlasts_the_longest_job():
    settings = Settings(
        comfyui_url="http://c:1",
        max_job_timeout_seconds=600,
        interrupt_grace_seconds=10,
    )

    assert settings.max_poll_interval_ms == (600 + 10 + 120) * 1000


def test_worker_ids_differ_per_instance():
    first = Settings(comfyui_url="http://c:1").worker_id
    second = Settings(comfyui_url="http://c:1").worker_id

    assert first != second
