"""The base of every request body the gateway takes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

NUL = "\x00"


def nul_at(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) in `value` holding a NUL, or None.

    Postgres text and JSONB cannot hold NUL, so a body carrying one would
    fail in whichever service stores it; it is refused here, naming where.
    """
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and NUL in key:
                return here
            found = nul_at(item, here)
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


class RequestBody(BaseModel):
    # Mass assignment: a field this API does not take is a 422, never passed on
    # to a service nor silently dropped.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # Before the fields are parsed, so nested graphs and metadata are
        # walked as they arrived.
        found = nul_at(data)
        if found is not None:
            raise ValueError(f"{found} must not contain a NUL character")
        return data
