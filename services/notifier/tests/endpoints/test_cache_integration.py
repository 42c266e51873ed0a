"""The running notifier's endpoint cache over a real Postgres: a tenant's
endpoints are read once and read again only after one of them changes,
whichever path wrote the change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from comfyserve.notifier.app import App
from comfyserve.notifier.endpoints import repository
from comfyserve.notifier.endpoints.models import EndpointChanges

from ..conftest import Receiver, eventually

pytestmark = pytest.mark.integration

TENANT = "tenant-cache"


@pytest.fixture
def reads(app: App) -> Iterator[list[str]]:
    """The tenants whose enabled endpoints were read from the database."""
    found: list[str] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if "FROM endpoints WHERE tenant_id" in statement and "enabled" in statement:
            found.append(str(parameters))

    event.listen(app.engine.sync_engine, "before_cursor_execute", seen)
    yield found
    event.remove(app.engine.sync_engine, "before_cursor_execute", seen)


async def ids(app: App) -> list[str]:
    return [str(e.id) for e in await app.deliveries.endpoints.enabled(TENANT)]


async def test_endpoints_are_read_once_until_one_changes_by_any_path(
    app: App, receiver: Receiver, reads: list[str]
) -> None:
    cache = app.deliveries.endpoints
    await eventually(lambda: cache.is_listening, what="the listener connecting")
    for _ in range(3):
        assert await ids(app) == []
    assert len(reads) == 1

    made = await app.endpoints.create(TENANT, receiver.url, [], "")
    endpoint_id = str(made.endpoint.id)

    async def shows(expected: list[str]) -> bool:
        return await ids(app) == expected

    await eventually(lambda: shows([endpoint_id]), what="the new endpoint")
    before = len(reads)
    assert await ids(app) == [endpoint_id]
    assert len(reads) == before

    # The delivery worker disables an endpoint that is gone: no API call.
    async with app.engine.begin() as conn:
        await repository.disable_endpoint(conn, made.endpoint.id, "gone")
    await eventually(lambda: shows([]), what="the disabled endpoint leaving")

    await app.endpoints.update(TENANT, endpoint_id, EndpointChanges(enabled=True))
    await eventually(lambda: shows([endpoint_id]), what="the endpoint enabled")
    await app.endpoints.delete(TENANT, endpoint_id)
    await eventually(lambda: shows([]), what="the deleted endpoint leaving")


async def test_without_its_listener_every_event_reads(
    app: App, reads: list[str]
) -> None:
    cache = app.deliveries.endpoints
    await eventually(lambda: cache.is_listening, what="the listener connecting")
    cache.stopped_listening()

    for _ in range(3):
        assert await ids(app) == []

    assert len(reads) == 3
