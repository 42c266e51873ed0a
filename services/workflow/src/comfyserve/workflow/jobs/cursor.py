"""Opaque page cursors for listing jobs newest first: `(created_at, id)`."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from comfyserve.workflow.errors import InvalidCursorError

_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last job of a page; the next page starts strictly after it."""

    created_at: datetime
    job_id: UUID

    def encode(self) -> str:
        raw = f"{_VERSION}|{self.created_at.isoformat()}|{self.job_id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
            version, created_at, job_id = raw.split("|")
            cursor = cls(datetime.fromisoformat(created_at), UUID(job_id))
        except (ValueError, UnicodeError, binascii.Error):
            raise InvalidCursorError() from None
        if version != _VERSION or cursor.created_at.tzinfo is None:
            raise InvalidCursorError()
        return cursor
