"""Endpoint registration and signing secrets: checks, then one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.contracts.webhooks import WEBHOOK_EVENTS
from comfyserve.notifier import paging
from comfyserve.notifier.clock import utcnow
from comfyserve.notifier.endpoints import repository
from comfyserve.notifier.endpoints.models import Endpoint, EndpointChanges, Secrets
from comfyserve.notifier.errors import EndpointNotFound, InvalidArgument
from comfyserve.notifier.settings import Settings
from comfyserve.notifier.signing import new_secret
from comfyserve.runtime.database import autocommit
from comfyserve.runtime.netguard import UnsafeTargetError, check_target

MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 500


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: Endpoint
    secret: str


@dataclass(frozen=True, slots=True)
class EndpointPage:
    endpoints: list[Endpoint]
    next_cursor: str


def parse_endpoint_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise EndpointNotFound(value) from None


def checked_event_types(values: Sequence[str], field: str) -> tuple[str, ...]:
    unknown = sorted(set(values) - set(WEBHOOK_EVENTS))
    if unknown:
        known = ", ".join(sorted(WEBHOOK_EVENTS))
        raise InvalidArgument(field, f"unknown event type {unknown[0]!r} ({known})")
    return tuple(sorted(set(values)))


class EndpointService:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    async def _checked_url(self, url: str) -> str:
        if not url:
            raise InvalidArgument("url", "is required")
        if len(url) > MAX_URL_CHARS:
            raise InvalidArgument("url", f"longer than {MAX_URL_CHARS} characters")
        try:
            await check_target(url, allow_loopback=self._settings.allow_private_targets)
        except UnsafeTargetError as error:
            raise InvalidArgument("url", str(error)) from None
        return url

    @staticmethod
    def _checked_description(description: str) -> str:
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidArgument(
                "description", f"longer than {MAX_DESCRIPTION_CHARS} characters"
            )
        return description

    def _previous_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self._settings.secret_overlap_seconds)

    async def create(
        self, tenant_id: str, url: str, event_types: Sequence[str], description: str
    ) -> EndpointWithSecret:
        checked_url = await self._checked_url(url)
        types = checked_event_types(event_types, "event_types")
        secret = new_secret()
        async with self._engine.begin() as conn:
            endpoint = await repository.insert_endpoint(
                conn,
                endpoint_id=uuid.uuid4(),
                tenant_id=tenant_id,
                url=checked_url,
                event_types=types,
                description=self._checked_description(description),
                secret=secret,
            )
        return EndpointWithSecret(endpoint, secret)

    async def get(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        async with autocommit(self._engine) as conn:
            found = await repository.get_endpoint(
                conn, tenant_id, parse_endpoint_id(endpoint_id)
            )
        if found is None:
            raise EndpointNotFound(endpoint_id)
        return found

    async def list(self, tenant_id: str, size: int, cursor: str) -> EndpointPage:
        limit = paging.page_size(size)
        async with autocommit(self._engine) as conn:
            rows = await repository.list_endpoints(
                conn, tenant_id, limit + 1, paging.decode(cursor)
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            paging.encode(paging.Position(rows[-1].created_at, str(rows[-1].id)))
            if more
            else ""
        )
        return EndpointPage(rows, next_cursor)

    async def update(
        self, tenant_id: str, endpoint_id: str, changes: EndpointChanges
    ) -> Endpoint:
        checked = EndpointChanges(
            url=None if changes.url is None else await self._checked_url(changes.url),
            event_types=(
                None
                if changes.event_types is None
                else checked_event_types(changes.event_types, "event_types")
            ),
            description=(
                None
                if changes.description is None
                else self._checked_description(changes.description)
            ),
            enabled=changes.enabled,
        )
        async with self._engine.begin() as conn:
            found = await repository.update_endpoint(
                conn, tenant_id, parse_endpoint_id(endpoint_id), checked
            )
        if found is None:
            raise EndpointNotFound(endpoint_id)
        return found

    async def delete(self, tenant_id: str, endpoint_id: str) -> None:
        async with self._engine.begin() as conn:
            deleted = await repository.delete_endpoint(
                conn, tenant_id, parse_endpoint_id(endpoint_id)
            )
        if not deleted:
            raise EndpointNotFound(endpoint_id)

    async def rotate_secret(
        self, tenant_id: str, endpoint_id: str
    ) -> EndpointWithSecret:
        secret = new_secret()
        async with self._engine.begin() as conn:
            found = await repository.rotate_endpoint_secret(
                conn,
                tenant_id,
                parse_endpoint_id(endpoint_id),
                secret,
                self._previous_until(),
            )
        if found is None:
            raise EndpointNotFound(endpoint_id)
        return EndpointWithSecret(found, secret)

    async def signing_secret(self, tenant_id: str) -> Secrets:
        async with self._engine.begin() as conn:
            return await repository.ensure_signing_secret(conn, tenant_id, new_secret())

    async def rotate_signing_secret(self, tenant_id: str) -> Secrets:
        async with self._engine.begin() as conn:
            return await repository.rotate_signing_secret(
                conn, tenant_id, new_secret(), self._previous_until()
            )
