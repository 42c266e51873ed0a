"""The base of every request body the gateway takes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    # Mass assignment: a field this API does not take is a 422, never passed on
    # to a service nor silently dropped.
    model_config = ConfigDict(extra="forbid")
