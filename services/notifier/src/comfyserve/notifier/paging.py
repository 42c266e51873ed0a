"""Opaque cursors for newest-first pages: the last row's time and id."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from comfyserve.notifier.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class Position:
    created_at: datetime
    id: str


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(position: Position) -> str:
    raw = f"{position.created_at.isoformat()}|{position.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode(cursor: str) -> Position | None:
    if not cursor:
        return None
    try:
        when, _, row_id = base64.urlsafe_b64decode(cursor).decode().partition("|")
        return Position(datetime.fromisoformat(when), row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("cursor", "not a cursor this service gave") from None
