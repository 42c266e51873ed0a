"""The native WebSocket over a real uvicorn, fed by scripted job updates."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.server import server_config
from comfyserve.gateway.settings import Settings

Connect = Callable[..., AbstractAsyncContextManager[ClientConnection]]


@pytest.fixture
def key_a(settings: Settings) -> str:
    return settings.api_keys[0].get_secret_value()


@pytest.fixture
def key_b(settings: Settings) -> str:
    return settings.api_keys[1].get_secret_value()


@pytest.fixture
async def port(make_app, settings, uvicorn_server) -> AsyncIterator[int]:
    async with uvicorn_server(server_config(make_app(settings), settings)) as bound:
        yield bound


@pytest.fixture
def connect(port: int) -> Connect:
    @asynccontextmanager
    async def opened(
        query: str, headers: dict[str, str] | None = None, path: str = "/ws"
    ) -> AsyncIterator[ClientConnection]:
        url = f"ws://127.0.0.1:{port}{path}?{query}"
        async with websockets.connect(url, additional_headers=headers) as socket:
            yield socket

    return opened


async def receive(socket: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), 10))


def job(tenant_id: str, status: int, **fields: Any) -> wf.Job:
    fields.setdefault("id", str(uuid.uuid4()))
    fields.setdefault("client_id", "C")
    return wf.Job(tenant_id=tenant_id, status=status, **fields)


async def test_hello_names_the_client_id_and_the_queue(
    connect, key_a, workflow, tenant_a
) -> None:
    queued = job(tenant_a, wf.JOB_STATUS_PENDING, client_id="other")
    workflow.jobs[queued.id] = queued

    async with connect(f"clientId=C&token={key_a}") as socket:
        hello = await receive(socket)

    assert hello == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "C"},
    }


async def test_without_a_client_id_the_sid_is_32_hex(connect, key_a) -> None:
    async with connect(f"token={key_a}", path="/api/ws") as socket:
        hello = await receive(socket)

    assert re.fullmatch(r"[0-9a-f]{32}", hello["data"]["sid"])


async def test_basic_credentials_open_a_socket(connect, key_a) -> None:
    pair = base64.b64encode(f"user:{key_a}".encode()).decode()
    async with connect("clientId=C", {"Authorization": f"Basic {pair}"}) as socket:
        assert (await receive(socket))["type"] == "status"


@pytest.mark.parametrize("query", ["clientId=C", "clientId=C&token=csk_guess"])
async def test_a_missing_or_bad_credential_is_refused_in_the_handshake(
    connect, query, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(query):
            pass

    assert refused.value.response.status_code == 401
    assert b"csk_guess" not in refused.value.response.body
    # A refusal is an answer, not a server fault: nothing logged as an error.
    assert 'WebSocket /ws?clientId=C" 401' in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_feature_flags_are_answered(connect, key_a, settings) -> None:
    async with connect(f"clientId=C&token={key_a}") as socket:
        await receive(socket)
        await socket.send(
            json.dumps(
                {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            )
        )
        await socket.send("not json, ignored")
        flags = await receive(socket)

    assert flags == {
        "type": "feature_flags",
        "data": {
            "supports_preview_metadata": True,
            "max_upload_size": settings.max_upload_bytes,
        },
    }


async def test_a_newer_socket_with_the_same_id_replaces_the_older(
    connect, key_a
) -> None:
    async with connect(f"clientId=C&token={key_a}") as older:
        await receive(older)
        async with connect(f"clientId=C&token={key_a}") as newer:
            await receive(newer)
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(older.recv(), 10)


async def test_no_log_line_carries_a_query_token(connect, key_a, caplog) -> None:
    caplog.set_level(logging.INFO)
    async with connect(f"clientId=C&token={key_a}") as socket:
        await receive(socket)
    with pytest.raises(websockets.InvalidStatus):
        async with connect("clientId=C&token=not-a-key-but-secret"):
            pass

    # uvicorn logs every handshake with its path and query, accepted or not.
    logged = [record.getMessage() for record in caplog.records]
    assert any("WebSocket /ws?clientId=C" in line for line in logged)
    assert not [line for line in logged if key_a in line]
    assert not [line for line in logged if "not-a-key-but-secret" in line]
