"""The fingerprint that tells a replayed request from a different one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from comfyserve.contracts.events import Priority


def request_hash(
    *,
    workflow: Any,
    priority: Priority,
    timeout_seconds: int,
    webhook_url: str | None,
    metadata: Mapping[str, str],
) -> str:
    """SHA-256 of the request's canonical JSON: the parsed workflow (so spacing
    and key order do not matter) and the effective options; the tenant and the
    key itself identify the record and are left out."""
    canonical = json.dumps(
        {
            "workflow": workflow,
            "priority": priority.value,
            "timeout_seconds": timeout_seconds,
            "webhook_url": webhook_url,
            "metadata": dict(metadata),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
