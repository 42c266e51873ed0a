"""Third-party native ComfyUI clients, run unmodified against the product.

`comfy-ui-client` 0.1.2 from npm (with its `ws` and `pino`, pinned by
`tests/e2e/node/package-lock.json`) is installed once with `npm ci` under
`.local/comfy-ui-client`, its download cache under `$COMFYSERVE_CACHE/npm` when
that is set, and run with the machine's Node by `node/comfy_ui_client_run.js`.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image

from tests.e2e.support import Product, invert_graph

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).resolve().parent / "node"
INSTALL = ROOT / ".local" / "comfy-ui-client"
INSTALL_TIMEOUT_S = 600
# The client waits for its prompt without a limit of its own.
RUN_TIMEOUT_S = 300


def _npm_env() -> dict[str, str]:
    env = dict(os.environ)
    cache = os.environ.get("COMFYSERVE_CACHE")
    if cache:
        env["npm_config_cache"] = str(Path(cache) / "npm")
    return env


def node_modules() -> Path:
    """The installed packages, installing them first when the lock changed."""
    lock = (SOURCES / "package-lock.json").read_bytes()
    marker = INSTALL / f".installed-{hashlib.sha256(lock).hexdigest()[:16]}"
    if marker.exists():
        return INSTALL / "node_modules"
    INSTALL.mkdir(parents=True, exist_ok=True)
    # Test processes running at once must not install twice.
    with (INSTALL.parent / "comfy-ui-client.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not marker.exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copy(SOURCES / name, INSTALL / name)
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=INSTALL,
                check=True,
                env=_npm_env(),
                timeout=INSTALL_TIMEOUT_S,
                capture_output=True,
            )
            marker.touch()
    return INSTALL / "node_modules"


def run_comfy_ui_client(server_address: str, prompt: dict[str, Any]) -> Any:
    """The images the client returned for `prompt`: its script's last line."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NODE_PATH": str(node_modules()),
        "COMFY_SERVER_ADDRESS": server_address,
        "COMFY_PROMPT": json.dumps(prompt),
    }
    completed = subprocess.run(
        ["node", str(SOURCES / "comfy_ui_client_run.js")],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    # Its stdout is pino's log, which quotes the URL and so the key: only
    # stderr (the error) is shown.
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def node_available() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node and npm are needed for the native client tests")


@pytest.mark.usefixtures("node_available")
async def test_comfy_ui_client_queues_a_prompt_and_gets_its_image(
    product: Product,
) -> None:
    host = product.base_url.removeprefix("http://")
    server_address = f"comfy:{quote(product.key_a, safe='')}@{host}"

    images = run_comfy_ui_client(server_address, invert_graph((10, 20, 30), "npm"))

    assert list(images) == ["3"]
    (saved,) = images["3"]
    assert saved["image"]["type"] == "output"
    assert saved["image"]["filename"].startswith("npm")
    data = base64.b64decode(saved["base64"])
    assert data.startswith(b"\x89PNG")
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    assert picture.size == (32, 16)
    assert picture.getpixel((0, 0)) == (245, 235, 225)
