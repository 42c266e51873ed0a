"""A prompt router in memory: the Redis one's behaviour within one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from comfyserve.gateway.native.routing import (
    Notice,
    PromptQueued,
    QueueChanged,
    Replaced,
)


@dataclass
class _Socket:
    tenant_id: str
    client_id: str
    socket_id: str
    inbox: asyncio.Queue[Notice] = field(default_factory=asyncio.Queue)


class FakePromptRouter:
    def __init__(self) -> None:
        self._sockets: list[_Socket] = []
        self.announced: list[tuple[str, str, str]] = []

    async def announce(self, tenant_id: str, client_id: str, prompt_id: str) -> None:
        self.announced.append((tenant_id, client_id, prompt_id))
        await self.queue_changed(tenant_id)
        for socket in self._of(tenant_id, client_id):
            socket.inbox.put_nowait(PromptQueued(prompt_id))

    async def queue_changed(self, tenant_id: str, origin: str = "") -> None:
        for socket in self._sockets:
            if socket.tenant_id == tenant_id and socket.socket_id != origin:
                socket.inbox.put_nowait(QueueChanged())

    @asynccontextmanager
    async def listen(
        self, tenant_id: str, client_id: str, socket_id: str
    ) -> AsyncIterator[AsyncIterator[Notice]]:
        for older in self._of(tenant_id, client_id):
            older.inbox.put_nowait(Replaced())
        socket = _Socket(tenant_id, client_id, socket_id)
        self._sockets.append(socket)
        try:
            yield _drain(socket.inbox)
        finally:
            self._sockets.remove(socket)

    def _of(self, tenant_id: str, client_id: str) -> list[_Socket]:
        return [
            socket
            for socket in self._sockets
            if (socket.tenant_id, socket.client_id) == (tenant_id, client_id)
        ]


async def _drain(inbox: asyncio.Queue[Notice]) -> AsyncIterator[Notice]:
    while True:
        yield await inbox.get()
