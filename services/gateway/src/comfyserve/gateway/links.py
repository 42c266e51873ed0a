"""Absolute URLs of our own resources, for the `links` of responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from comfyserve.gateway.settings import Settings


class Links:
    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")

    def url(self, path: str) -> str:
        return f"{self._base}{path}"

    def job(self, job_id: str) -> str:
        return self.url(f"/workflows/{job_id}")

    def file(self, file_id: str) -> str:
        return self.url(f"/files/{file_id}")


async def _links(request: Request) -> Links:
    settings: Settings = request.app.state.settings
    if settings.public_base_url is not None:
        return Links(str(settings.public_base_url))
    # base_url carries the scheme, host and root path the client used.
    return Links(str(request.base_url))


LinksDep = Annotated[Links, Depends(_links)]
