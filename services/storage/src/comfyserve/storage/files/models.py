"""The `files` table and the values the service hands to its transport."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, String
from sqlmodel import Field, SQLModel


class FilePurpose(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Folder(StrEnum):
    """The native ComfyUI folders a client file can be uploaded into."""

    INPUT = "input"
    TEMP = "temp"
    OUTPUT = "output"


class FileState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    # Claimed for deletion: gone for every read, its object on the way out.
    DELETING = "deleting"


class StorageModel(SQLModel):
    # Own metadata: tables of other services never mix with ours, and the schema
    # is each connection's `search_path` (`comfyserve.runtime.database`).
    metadata = MetaData()


class StoredFile(StorageModel, table=True):
    __tablename__ = "files"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: str = Field(sa_type=String(128))
    purpose: str = Field(sa_type=String(16))
    filename: str = Field(sa_type=String(255))
    content_type: str = Field(sa_type=String(255))
    size: int = Field(sa_type=BigInteger)
    sha256: str | None = Field(default=None, sa_type=String(64))
    bucket: str = Field(sa_type=String(255))
    key: str = Field(sa_type=String(1024))
    job_id: str | None = Field(default=None, sa_type=String(128))
    node_id: str | None = Field(default=None, sa_type=String(128))
    index: int | None = Field(default=None, sa_type=Integer)
    attempt: int | None = Field(default=None, sa_type=Integer)
    width: int | None = Field(default=None, sa_type=Integer)
    height: int | None = Field(default=None, sa_type=Integer)
    state: str = Field(sa_type=String(16))
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    deleting_since: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True)
    )
    # `blake3:<hex>`; rows minted from a hash share the object of their source.
    blake3: str | None = Field(default=None, sa_type=String(71))
    # Client files only: the native ComfyUI folder and the path inside it.
    folder: str | None = Field(default=None, sa_type=String(16))
    path: str | None = Field(default=None, sa_type=String(1024))


@dataclass(frozen=True)
class UploadRequest:
    """CreateUpload as the caller sent it; the service validates it."""

    tenant_id: str
    purpose: FilePurpose | None
    filename: str
    content_type: str
    size: int
    job_id: str | None
    node_id: str | None
    index: int | None
    sha256: str | None
    ttl_seconds: int | None
    attempt: int | None = None
    blake3: str | None = None
    folder: str | None = None
    path: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Minted:
    """A file minted over a known hash; `created_new` false when it existed."""

    file: StoredFile
    created_new: bool


@dataclass(frozen=True)
class Upload:
    file: StoredFile
    url: str
    url_expires_at: datetime
    headers: dict[str, str]


@dataclass(frozen=True)
class DownloadLink:
    file_id: uuid.UUID
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class FilePage:
    files: list[StoredFile]
    next_cursor: str


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant stores: its ready files and their bytes."""

    tenant_id: str
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class PurgeReport:
    """Rows whose object and row are gone, and rows left `deleting` for a retry."""

    deleted: int
    failed: int
