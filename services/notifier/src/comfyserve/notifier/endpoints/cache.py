"""Each tenant's enabled endpoints, read once and kept until one of them changes.

Every job event asks which endpoints receive it, and most events belong to
tenants with none: a read per event was the notifier's largest cost per job.
A trigger notifies `<schema>_endpoints` with the tenant of every endpoint row
written (migration 0003); each instance listens and forgets that tenant.

Endpoints are kept only while the listener is connected, since what is sent
while it is away is lost, and never longer than `_KEEP_SECONDS`: a connection
that drops silently shows only at its next keepalive.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.notifier.endpoints import repository
from comfyserve.notifier.endpoints.models import Endpoint
from comfyserve.runtime.database import autocommit

_KEEP_SECONDS = 30.0
# Past this many tenants it starts again rather than grow without bound.
_MAX_TENANTS = 10_000


def changes_channel(schema: str) -> str:
    """The NOTIFY channel that names the tenant whose endpoints changed."""
    return f"{schema}_endpoints"


class EndpointCache:
    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._kept: dict[str, tuple[float, tuple[Endpoint, ...]]] = {}
        self._listening = False
        # Counts what was forgotten: a read that overlapped a change may have
        # seen the endpoints before it, so it is answered but not kept.
        self._forgotten = 0

    @property
    def is_listening(self) -> bool:
        return self._listening

    async def enabled(self, tenant_id: str) -> tuple[Endpoint, ...]:
        """The tenant's enabled endpoints, oldest first."""
        now = self._clock()
        kept = self._kept.get(tenant_id)
        if kept is not None and now - kept[0] < _KEEP_SECONDS:
            return kept[1]
        forgotten = self._forgotten
        async with autocommit(self._engine) as conn:
            found = tuple(await repository.enabled_endpoints(conn, tenant_id))
        if self._listening and forgotten == self._forgotten:
            if len(self._kept) >= _MAX_TENANTS:
                self._kept.clear()
            self._kept[tenant_id] = (now, found)
        return found

    def changed(self, tenant_id: str) -> None:
        """An endpoint of `tenant_id` changed (the listener's notification)."""
        self._forgotten += 1
        self._kept.pop(tenant_id, None)

    def listening(self) -> None:
        """The listener (re)connected: changes made while it was away are
        unknown, so nothing kept before is kept any longer."""
        self._forgotten += 1
        self._kept.clear()
        self._listening = True

    def stopped_listening(self) -> None:
        """The listener lost its connection: read every time until it is back."""
        self._forgotten += 1
        self._kept.clear()
        self._listening = False
