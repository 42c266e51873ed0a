"""Response bodies of the file routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class FileLinks(BaseModel):
    self: str
    content: str


class FileMetadata(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    # Hex SHA-256 of the content; null when unknown.
    sha256: str | None
    width: int | None
    height: int | None
    created_at: datetime | None
    expires_at: datetime | None
    links: FileLinks
