"""The merged node catalog of every executor that has published one."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.validation import NodeCatalog
from comfyserve.workflow.workers import repository
from comfyserve.workflow.workers.repository import CatalogVersion


class CatalogCache:
    """Rebuilds the merged catalog only when some worker's catalog hash changed:
    each lookup reads the (worker, hash) pairs, not the documents."""

    def __init__(self) -> None:
        self._versions: frozenset[CatalogVersion] | None = None
        self._catalog: NodeCatalog | None = None
        self._lock = asyncio.Lock()

    async def current(self, conn: AsyncConnection) -> NodeCatalog | None:
        versions = await repository.catalog_versions(conn)
        if not versions:
            return None
        async with self._lock:
            if versions != self._versions or self._catalog is None:
                documents = await repository.object_infos(conn)
                self._catalog = await asyncio.to_thread(
                    NodeCatalog.from_object_info, *documents
                )
                self._versions = versions
            return self._catalog
