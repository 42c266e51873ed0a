"""Where a job's partner-node key waits between its submit and its claims:
Redis, under a job-scoped key that expires with the job (ADR 0006). The key's
value is never logged, and never written anywhere else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from comfyserve.workflow.errors import PartnerKeysUnavailableError


class PartnerKeys(Protocol):
    async def keep(self, job_id: str, key: str, until: datetime) -> None:
        """Hold `key` for `job_id` until `until` (replacing any)."""
        ...

    async def get(self, job_id: str) -> str | None:
        """The job's key, or None when it has none (or it expired)."""
        ...

    async def forget(self, job_ids: Sequence[str]) -> None:
        """Drop the keys of these jobs; those without one are skipped."""
        ...


class RedisPartnerKeys:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        # Deployments (and test runs) sharing one Redis never share a job id's
        # entry: the namespace is the service's schema.
        self._prefix = f"{namespace}:partner-key:"

    async def keep(self, job_id: str, key: str, until: datetime) -> None:
        try:
            await self._redis.set(self._prefix + job_id, key, pxat=until)
        except RedisError as error:
            raise PartnerKeysUnavailableError(type(error).__name__) from None

    async def get(self, job_id: str) -> str | None:
        try:
            value = await self._redis.get(self._prefix + job_id)
        except RedisError as error:
            raise PartnerKeysUnavailableError(type(error).__name__) from None
        if value is None:
            return None
        return value if isinstance(value, str) else value.decode()

    async def forget(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        try:
            await self._redis.delete(*(self._prefix + job_id for job_id in job_ids))
        except RedisError as error:
            raise PartnerKeysUnavailableError(type(error).__name__) from None
