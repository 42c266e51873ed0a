import os
import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from comfyserve.executor.settings import EngineMode, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("EXECUTOR_"):
            monkeypatch.delenv(key)


def test_managed_mode_needs_only_a_path(monkeypatch):
    monkeypatch.setenv("EXECUTOR_COMFYUI_PATH", "/opt/ComfyUI")

    settings = Settings()

    assert settings.engine_mode == EngineMode.MANAGED
    assert settings.comfyui_path == Path("/opt/ComfyUI")
    assert settings.http_port == 9104


def test_remote_mode(monkeypatch):
    monkeypatch.setenv("EXECUTOR_COMFYUI_URL", "http://comfy:8188")

    assert Settings().engine_mode == EngineMode.REMOTE


@pytest.mark.parametrize(
    "env",
    [{}, {"EXECUTOR_COMFYUI_PATH": "/c", "EXECUTOR_COMFYUI_URL": "http://c:1"}],
)
def test_exactly_one_engine_mode(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(ValidationError, match="exactly one of"):
        Settings()


def test_defaults_reach_the_local_stack_and_take_default_jobs():
    settings = Settings(comfyui_url="http://c:1")

    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.pool == "default"
    assert settings.acquire_wait_seconds == 20.0


def test_pool_and_acquire_wait_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("EXECUTOR_COMFYUI_URL", "http://c:1")
    monkeypatch.setenv("EXECUTOR_POOL", "sdxl-a100")
    monkeypatch.setenv("EXECUTOR_ACQUIRE_WAIT_SECONDS", "5")

    settings = Settings()

    assert (settings.pool, settings.acquire_wait_seconds) == ("sdxl-a100", 5.0)


@pytest.mark.parametrize(
    "fields",
    [{"pool": ""}, {"pool": "p" * 129}, {"acquire_wait_seconds": 0}],
)
def test_pool_and_acquire_wait_are_bounded(fields):
    with pytest.raises(ValidationError):
        Settings(comfyui_url="http://c:1", **fields)


def test_scratch_is_a_folder_of_the_workers_own_unless_set():
    first = Settings(comfyui_url="http://c:1", worker_id="w-1")
    second = Settings(comfyui_url="http://c:1", worker_id="w-2")
    chosen = Settings(comfyui_url="http://c:1", scratch_dir=Path("/data/scratch"))

    base = Path(tempfile.gettempdir()) / "comfyserve-executor"
    assert first.scratch == base / "w-1"
    assert second.scratch == base / "w-2"
    assert chosen.scratch == Path("/data/scratch")


def test_the_settings_of_consuming_submitted_jobs_are_gone(monkeypatch):
    # Left in an old deployment's environment, they change nothing.
    monkeypatch.setenv("EXECUTOR_CONSUMER_GROUP", "executor")
    monkeypatch.setenv("EXECUTOR_MAX_JOB_TIMEOUT_SECONDS", "600")

    settings = Settings(comfyui_url="http://c:1")

    for name in ("consumer_group", "max_job_timeout_seconds", "max_poll_interval_ms"):
        assert not hasattr(settings, name)


def test_worker_ids_differ_per_instance():
    first = Settings(comfyui_url="http://c:1").worker_id
    second = Settings(comfyui_url="http://c:1").worker_id

    assert first != second


def test_the_service_key_comes_from_the_environment_and_stays_secret(monkeypatch):
    monkeypatch.setenv("EXECUTOR_COMFYUI_URL", "http://c:1")

    assert Settings().service_credential is None

    monkeypatch.setenv("EXECUTOR_SERVICE_KEY", "csk_executor-secret")
    settings = Settings()

    assert settings.service_credential == "csk_executor-secret"
    assert "csk_executor-secret" not in repr(settings)
