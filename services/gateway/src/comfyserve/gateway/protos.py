"""Reading optional protobuf fields as Python values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp


def optional_time(message: Message, field: str) -> datetime | None:
    """A timestamp field as an aware UTC datetime; None when unset."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)


def optional_int(message: Message, field: str) -> int | None:
    """An `optional` integer field; None when unset."""
    if not message.HasField(field):
        return None
    value: int = getattr(message, field)
    return value
