"""The node catalog of each executor pool, as validation reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.workflow.validation import NodeCatalog
from comfyserve.workflow.workers import repository
from comfyserve.workflow.workers.repository import CatalogVersion

PoolCatalogs = Mapping[str, NodeCatalog]

# How long a read of the pools stays current. Catalogs change when an
# executor of a pool starts with other nodes, liveness when its heartbeats
# stop: both on a scale of seconds, while submits come many a second.
FRESH_FOR_S = 1.0


@dataclass(frozen=True, slots=True)
class Fleet:
    """Every known pool's catalog, and the pools with live workers."""

    catalogs: PoolCatalogs = field(default_factory=lambda: MappingProxyType({}))
    live: frozenset[str] = frozenset()
    versions: frozenset[CatalogVersion] = frozenset()
    read_at: float = float("-inf")


class CatalogCache:
    """Reads the pools at most once per `fresh_for_s`, and rebuilds a pool's
    catalog only when its hash changed: each read is of the (pool, hash,
    live) rows, not the documents. An empty fleet is never served from the
    cache, so the first executor's catalog counts at once."""

    def __init__(
        self,
        fresh_for_s: float = FRESH_FOR_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fresh_for_s = fresh_for_s
        self._clock = clock
        self._fleet = Fleet()
        self._lock = asyncio.Lock()

    async def current(
        self,
        conn: AsyncConnection,
        seen_after: datetime,
        *,
        stale: Fleet | None = None,
    ) -> Fleet:
        """The pools as read within `fresh_for_s`; read anew when the cached
        read is `stale` (a caller that found it out of date), unless another
        caller has read them since."""
        if self._usable(stale):
            return self._fleet
        async with self._lock:
            if self._usable(stale):
                return self._fleet
            self._fleet = await self._read(conn, seen_after)
            return self._fleet

    def _usable(self, stale: Fleet | None) -> bool:
        fleet = self._fleet
        return (
            fleet is not stale
            and bool(fleet.catalogs)
            and self._clock() - fleet.read_at < self._fresh_for_s
        )

    async def _read(self, conn: AsyncConnection, seen_after: datetime) -> Fleet:
        read_at = self._clock()
        versions = await repository.catalog_versions(conn, seen_after)
        known = {v.pool: v.catalog_hash for v in self._fleet.versions}
        stale = {v.pool for v in versions if known.get(v.pool) != v.catalog_hash}
        catalogs = dict(self._fleet.catalogs)
        if stale:
            documents = await repository.object_infos(conn, stale)
            for pool, document in documents.items():
                catalogs[pool] = await asyncio.to_thread(
                    NodeCatalog.from_object_info, document
                )
        pools = {v.pool for v in versions}
        return Fleet(
            catalogs=MappingProxyType(
                {pool: c for pool, c in catalogs.items() if pool in pools}
            ),
            live=frozenset(v.pool for v in versions if v.live),
            versions=versions,
            read_at=read_at,
        )
