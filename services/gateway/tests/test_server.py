"""The production uvicorn configuration, against raw sockets."""

import asyncio

import pytest

from comfyserve.gateway.server import server_config

MB = 1024 * 1024


def _counting(protocol_class, received):
    """The HTTP protocol uvicorn runs, recording every chunk it reads."""

    def data_received(self, data):
        received.append(len(data))
        protocol_class.data_received(self, data)

    return type("Counting", (protocol_class,), {"data_received": data_received})


async def _exchange(port, request):
    """Send `request` and read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=10):
            answer += chunk
    except ConnectionResetError:
        # The server closes with the rest of the head unread.
        pass
    finally:
        writer.close()
    return answer


@pytest.fixture
async def served(app, settings, uvicorn_server):
    received: list[int] = []
    config = server_config(app, settings)
    config.load()
    config.http_protocol_class = _counting(config.http_protocol_class, received)
    async with uvicorn_server(config) as port:
        yield port, received


async def test_a_megabyte_header_is_refused_without_reading_it(served):
    port, received = served
    request = (
        b"GET /workflows HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer " + b"a" * MB + b"\r\n\r\n"
    )

    answer = await _exchange(port, request)

    # uvicorn's h11 protocol answers every malformed head, an oversized one
    # included, with a plain 400 (h11's own hint would be 431).
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"Invalid HTTP request received." in answer
    assert sum(received) < MB / 2


async def test_a_head_within_the_limit_is_served(served):
    port, _ = served
    request = (
        b"GET /health/live HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
        b"X-Padding: " + b"p" * 32 * 1024 + b"\r\n\r\n"
    )

    answer = await _exchange(port, request)

    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
