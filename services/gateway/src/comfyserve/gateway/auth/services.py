"""One dependency for every feature service a guarded route takes: the caller
`Access` lets in, and the clients, links and settings of the request, handed
to the feature's own constructor.

    ReadJobs = Annotated[JobsService, Depends(service(READ, _jobs))]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Depends, Request

from comfyserve.gateway.auth.dependencies import Access, Caller
from comfyserve.gateway.links import Links, LinksDep
from comfyserve.gateway.resources import Resources, ResourcesDep
from comfyserve.gateway.settings import Settings

Service = TypeVar("Service")


@dataclass(frozen=True, slots=True)
class Served:
    """What a feature service is built from for one request."""

    caller: Caller
    resources: Resources
    links: Links
    settings: Settings


def service(
    access: Access, build: Callable[[Served], Service]
) -> Callable[..., Awaitable[Service]]:
    """A dependency: `build`'s service for a caller `access` admits."""
    # The guard as a default, so it is a sub-dependency the route-table walk
    # and the OpenAPI answers see, as any route's.
    guard = Depends(access)

    # async, though it awaits nothing: FastAPI runs a plain function
    # dependency in a worker thread, a hand-off per request.
    async def dependency(
        request: Request,
        resources: ResourcesDep,
        links: LinksDep,
        caller: Caller = guard,
    ) -> Service:
        settings: Settings = request.app.state.settings
        return build(Served(caller, resources, links, settings))

    return dependency
