import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from comfyserve.runtime.logging import (
    configure_logging,
    describe_error,
    parse_level,
    redact,
)


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure_logging caches loggers on this test's captured stdout; later
    tests must not write to it once it is closed."""
    handlers = logging.getLogger().handlers[:]
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[int]:
    """A real uvicorn server in this event loop; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


PRESIGNED = (
    "http://127.0.0.1:17070/comfyserve/outputs/t/j/1/3/0-a.png"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=comfyserve%2F20261201"
    "&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef"
)


def test_presigned_url_keeps_its_path_and_loses_its_signature() -> None:
    text = redact(f"HTTP Request: PUT {PRESIGNED} 200")

    assert "0123456789abcdef" not in text
    assert "comfyserve%2F20261201" not in text
    assert "X-Amz-Signature=***" in text
    assert "/comfyserve/outputs/t/j/1/3/0-a.png" in text


JWT = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0"
    ".eyJzdWIiOiJ1c2VyLTEiLCJ0ZW5hbnQiOiJ0LTEifQ"
    ".MEUCIQDx9-sig_part"
)
BASIC = "dXNlcjpjc2tfZGV2XzJmOVF4LWFh"  # user:csk_dev_2f9Qx-aa


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        ("key csk_dev_2f9Qx-aa", "key csk_***"),
        (f"Authorization: Basic {BASIC}", "Authorization: Basic ***"),
        (f"{{'authorization': 'Basic {BASIC}'}}", "{'authorization': 'Basic ***'}"),
        (f"(b'authorization', b'Basic {BASIC}')", "(b'authorization', b'Basic ***')"),
        (f"GET /ws?clientId=c1&token={JWT} 101", "GET /ws?clientId=c1&token=*** 101"),
        ("/ws?token=csk_dev_2f9Qx-aa&x=1", "/ws?token=***&x=1"),
        ("refresh_token=r.t.v;", "refresh_token=***;"),
        (f"signed in: {JWT}", "signed in: eyJ***"),
        (
            "http://user:csk_dev_2f9Qx-aa@127.0.0.1:8000/",
            "http://user:***@127.0.0.1:8000/",
        ),
        (
            "postgresql+asyncpg://cs:pw@db:5432/x",
            "postgresql+asyncpg://cs:***@db:5432/x",
        ),
        ("next=%3FX-Amz-Signature%3Dabc123", "next=%3FX-Amz-Signature%3D***"),
        ("x-amz-credential=AKIA%2F2026", "x-amz-credential=***"),
        (
            "GET /o?AWSAccessKeyId=AKIA1&Signature=a%2Bb&Expires=1",
            "GET /o?AWSAccessKeyId=***&Signature=***&Expires=1",
        ),
        ("token type bearer abc.def", "token type bearer ***"),
    ],
)
def test_secrets_are_masked_wherever_they_appear(secret: str, masked: str) -> None:
    assert redact(secret) == masked


@pytest.mark.parametrize(
    "text",
    [
        "basic usage of the token count",
        "http://127.0.0.1:17070/comfyserve/outputs/a.png",
        "GET /ws?clientId=c1 101",
        "authorization failed for key_id=k-1",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_level_names_parse_whatever_their_case() -> None:
    assert parse_level("debug") == logging.DEBUG
    assert parse_level("WARNING") == logging.WARNING
    assert parse_level("nonsense") == logging.INFO
    assert parse_level(logging.ERROR) == logging.ERROR


def test_structlog_and_library_lines_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    structlog.get_logger("t").info("t.upload", url=PRESIGNED, nested={"u": PRESIGNED})
    logging.getLogger("aiokafka").warning("sending %s", PRESIGNED)
    logging.getLogger("httpx").info("HTTP Request: PUT %s", PRESIGNED)

    lines = capsys.readouterr().out.splitlines()

    assert all("0123456789abcdef" not in line for line in lines), lines
    records = [json.loads(line) for line in lines]
    assert records[0]["event"] == "t.upload"
    assert records[0]["nested"]["u"].endswith("X-Amz-Signature=***")
    # Library lines are JSON too, with their logger's name.
    [library] = [r for r in records if r.get("logger") == "aiokafka"]
    assert library["level"] == "warning"
    assert library["event"].startswith("sending http://127.0.0.1:17070/")
    # httpx's request log names every presigned URL: it is silenced.
    assert not any("HTTP Request" in line for line in lines)


def test_a_line_inside_a_span_names_its_trace_and_span(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        structlog.get_logger("t").info("t.inside")
        logging.getLogger("aiokafka").warning("inside too")
    structlog.get_logger("t").info("t.outside")

    inside, library, outside = (
        json.loads(line) for line in capsys.readouterr().out.splitlines()
    )
    context = span.get_span_context()
    for record in (inside, library):
        assert record["trace_id"] == format(context.trace_id, "032x")
        assert record["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside
    assert "span_id" not in outside


class FakeDriverError(Exception):
    """Stands for a driver error: it quotes the value it could not take."""

    sqlstate = "22P02"


FakeDriverError.__module__ = "asyncpg.exceptions"


class FakeStatementError(Exception):
    def __init__(self, orig: Exception) -> None:
        super().__init__(f"(asyncpg) {orig} [SQL: SELECT $1]")
        self.orig = orig


FakeStatementError.__module__ = "sqlalchemy.exc"


SECRET = "a secret prompt"


def failing_query(value: str = SECRET) -> None:
    try:
        raise FakeDriverError(f"invalid input for query argument $1: {value!r}")
    except FakeDriverError as driver:
        raise FakeStatementError(driver) from driver


def test_database_errors_are_named_without_their_values() -> None:
    with pytest.raises(FakeStatementError) as raised:
        failing_query()

    assert describe_error(raised.value) == (
        "FakeStatementError(FakeDriverError, sqlstate=22P02)"
    )
    assert describe_error(KeyError("k")) == "KeyError('k')"


def test_a_logged_database_traceback_keeps_frames_and_drops_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    try:
        failing_query()
    except FakeStatementError:
        structlog.get_logger("t").exception("t.failed")
        logging.getLogger("lib").exception("lib.failed")

    lines = capsys.readouterr().out.splitlines()

    assert len(lines) == 2
    assert all(SECRET not in line for line in lines)
    records = [json.loads(line) for line in lines]
    assert all("in failing_query" in r["exception"] for r in records)
    assert all("sqlstate=22P02" in r["exception"] for r in records)


def test_a_secret_that_only_a_repr_shows_is_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    headers = {"authorization": f"Basic {BASIC}".encode()}
    structlog.get_logger("t").info("t.request", headers=headers, raw=JWT.encode())

    [line] = capsys.readouterr().out.splitlines()

    assert BASIC not in line
    assert JWT not in line
    record = json.loads(line)
    assert record["headers"] == {"authorization": "b'Basic ***'"}


async def test_uvicorns_access_log_is_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    configure_logging("info")
    config = uvicorn.Config(app, log_config=None, access_log=True, lifespan="off")
    async with serving(config) as port:
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"http://127.0.0.1:{port}/ws?clientId=c1&token={JWT}"
            )

    lines = capsys.readouterr().out.splitlines()
    assert answer.status_code == 204
    [access] = [json.loads(line) for line in lines if "uvicorn.access" in line]
    assert "/ws?clientId=c1&token=*** HTTP/1.1" in access["event"]
    assert all(JWT not in line for line in lines)


async def test_websockets_debug_request_lines_are_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def echo(socket: ServerConnection) -> None:
        await socket.close()

    configure_logging("debug")
    async with serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}/ws?token=csk_dev_2f9Qx-aa",
            additional_headers={"Authorization": f"Basic {BASIC}"},
        ) as client:
            await client.wait_closed()

    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert "> GET /ws?token=*** HTTP/1.1" in events
    assert "> Authorization: Basic ***" in events
    assert all("2f9Qx" not in line and BASIC not in line for line in lines)
