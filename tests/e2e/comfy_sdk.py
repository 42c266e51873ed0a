"""The official `comfy-sdk` client, run unmodified against the product.

It lives in a virtual environment of its own (its pins are not ours), created
once under `.local/comfy-sdk-venv` and reused. A test hands `run_sdk` a script;
the script reads `COMFY_BASE_URL` and `COMFY_API_KEY` as the SDK documents, and
prints one JSON object on its last line of stdout, which `run_sdk` returns.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from tests.e2e.support import Product

SDK_REQUIREMENT = "comfy-sdk==0.5.0"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".local" / "comfy-sdk-venv"
UV = ROOT / ".local" / "bin" / "uv"
# Installing on a fresh machine downloads a handful of wheels.
INSTALL_TIMEOUT_S = 600
# Every scenario ends within this; a hung SDK call fails the test instead.
SCRIPT_TIMEOUT_S = 300


def _uv_env() -> dict[str, str]:
    env = dict(os.environ)
    cache = os.environ.get("COMFYSERVE_CACHE")
    if cache:
        env["UV_CACHE_DIR"] = str(Path(cache) / "uv")
    return env


def sdk_python() -> Path:
    """The venv's interpreter, creating the venv first if it lacks the SDK."""
    python = VENV / "bin" / "python"
    marker = VENV / f".installed-{SDK_REQUIREMENT}"
    if marker.exists():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    # Test processes running at once must not build the venv twice.
    with (VENV.parent / "comfy-sdk-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            env = _uv_env()
            subprocess.run(
                [str(UV), "venv", "--python", "3.11", "--allow-existing", str(VENV)],
                check=True,
                env=env,
                timeout=INSTALL_TIMEOUT_S,
            )
            subprocess.run(
                [str(UV), "pip", "install", "--python", str(python), SDK_REQUIREMENT],
                check=True,
                env=env,
                timeout=INSTALL_TIMEOUT_S,
            )
            marker.touch()
    return python


def run_sdk(product: Product, script: str, key: str | None = None) -> Any:
    """Run `script` with the SDK pointed at the gateway; its last stdout line, parsed.

    `key` defaults to tenant A's; the script sees it only as `COMFY_API_KEY`.
    A script that fails raises with its stderr, so the SDK's own error shows.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "COMFY_BASE_URL": product.base_url,
        "COMFY_API_KEY": key or product.key_a,
    }
    completed = subprocess.run(
        [str(sdk_python()), "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"SDK script failed ({completed.returncode}):\n{completed.stderr}"
        )
    lines = completed.stdout.strip().splitlines()
    assert lines, f"SDK script printed nothing; stderr:\n{completed.stderr}"
    return json.loads(lines[-1])
