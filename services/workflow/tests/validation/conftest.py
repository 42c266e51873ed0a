import json
from pathlib import Path
from typing import Any

import pytest

from comfyserve.workflow.validation import NodeCatalog

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def object_info() -> dict[str, Any]:
    """/object_info of the 2024 ComfyUI build (158 nodes)."""
    loaded: dict[str, Any] = json.loads(
        (DATA / "object_info_2024.json").read_text(encoding="utf-8")
    )
    return loaded


@pytest.fixture(scope="session")
def catalog(object_info: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog.from_object_info(object_info)
