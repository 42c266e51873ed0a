"""ListTenants cursors: where the last page ended, opaque to callers."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from uuid import UUID

from comfyserve.auth.errors import InvalidArgumentError


def encode(created_at: datetime, tenant_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(tenant_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, tenant_id = json.loads(raw)
        after = datetime.fromisoformat(created_at), UUID(tenant_id)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidArgumentError(
            "cursor", "not a cursor this service issued"
        ) from None
    if after[0].tzinfo is None:
        raise InvalidArgumentError("cursor", "not a cursor this service issued")
    return after
