"""No presigned signature reaches a log line: a real upload, real servers."""

from contextlib import asynccontextmanager

import httpx
import structlog
import uvicorn

from comfyserve.gateway.app import create_app, upload_client
from comfyserve.gateway.server import server_config
from comfyserve.runtime.logging import configure_logging

SIGNATURE = "5ec7e7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d"
PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=minioadmin%2F20301201%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20301201T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={SIGNATURE}"
)


class ObjectStore:
    """A tiny S3 stand-in over real HTTP, keeping PUT bodies in `objects`."""

    def __init__(self, objects):
        self.objects = objects
        self.queries = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.queries.append(scope["query_string"].decode())
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.objects.objects[scope["path"]] = body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _log_like_main():
    """The gateway's logging set-up, writing to this test's captured stdout.

    Called in the test itself: capsys swaps its streams between setup and call.
    """
    configure_logging("debug")
    # Not cached, so no logger outlives this test bound to its capture file.
    structlog.configure(cache_logger_on_first_use=False)


async def test_an_upload_leaves_no_signature_in_any_log_line(
    capsys, settings, storage, object_store, fake_resources, uvicorn_server, auth_a
):
    _log_like_main()
    store = ObjectStore(object_store)

    @asynccontextmanager
    async def resources(settings):
        async with upload_client() as http:
            yield fake_resources(settings, http)

    store_config = uvicorn.Config(store, log_config=None, access_log=False)
    gateway = server_config(create_app(settings, resources), settings)
    async with (
        uvicorn_server(store_config) as store_port,
        uvicorn_server(gateway) as gateway_port,
    ):
        storage.upload_base = f"http://127.0.0.1:{store_port}"
        storage.upload_query = PRESIGNED_QUERY
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"http://127.0.0.1:{gateway_port}/files",
                headers=auth_a,
                files={"file": ("notes.txt", b"hello", "text/plain")},
            )

    assert response.status_code == 201
    # The gateway did PUT to the presigned URL, signature and all.
    assert store.queries == [PRESIGNED_QUERY]
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert any("gateway.file.uploaded" in line for line in lines)
    assert [line for line in lines if SIGNATURE in line] == []
