"""The node catalog of each executor pool, as validation reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.validation import NodeCatalog
from comfyserve.workflow.workers import repository
from comfyserve.workflow.workers.repository import CatalogVersion

PoolCatalogs = Mapping[str, NodeCatalog]


class CatalogCache:
    """Rebuilds a pool's catalog only when its hash changed: each lookup reads
    the (pool, hash) pairs, not the documents."""

    def __init__(self) -> None:
        self._versions: frozenset[CatalogVersion] = frozenset()
        self._catalogs: PoolCatalogs = MappingProxyType({})
        self._lock = asyncio.Lock()

    async def current(self, conn: AsyncConnection) -> PoolCatalogs:
        """Every known pool's catalog; empty before any executor published."""
        versions = await repository.catalog_versions(conn)
        async with self._lock:
            if versions != self._versions:
                known = {v.pool: v.catalog_hash for v in self._versions}
                stale = {
                    v.pool for v in versions if known.get(v.pool) != v.catalog_hash
                }
                documents = await repository.object_infos(conn, stale)
                catalogs = {
                    pool: catalog
                    for pool, catalog in self._catalogs.items()
                    if pool not in stale
                }
                for pool, document in documents.items():
                    catalogs[pool] = await asyncio.to_thread(
                        NodeCatalog.from_object_info, document
                    )
                live = {v.pool for v in versions}
                self._catalogs = MappingProxyType(
                    {pool: c for pool, c in catalogs.items() if pool in live}
                )
                self._versions = versions
            return self._catalogs
