"""Upload routes of the v2 and native surfaces take the upload body limit, as
`POST /files` does, also behind a proxy's root path."""

import os

import pytest

from comfyserve.gateway.app import _body_limit
from comfyserve.gateway.settings import MULTIPART_OVERHEAD_BYTES


@pytest.mark.parametrize(
    "path", ["/api/v2/assets", "/upload/image", "/api/upload/image", "/upload/mask"]
)
def test_upload_routes_take_the_upload_limit_under_any_root(settings, path) -> None:
    limit_for = _body_limit(settings)
    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    for root in ("", "/deployment/abc"):
        scope = {"method": "POST", "path": f"{root}{path}", "root_path": root}
        assert limit_for(scope) == upload_limit
    assert limit_for({"method": "POST", "path": "/api/v2/jobs"}) == (
        settings.max_body_bytes
    )


async def test_a_file_over_the_json_body_limit_uploads(client, app, auth_a) -> None:
    app.state.settings.max_body_bytes = 1024
    data = os.urandom(4096)

    response = await client.post(
        "/api/v2/assets",
        headers=auth_a,
        data={"content_type": "application/octet-stream", "file_path": "blob.bin"},
        files={"file": ("blob.bin", data, "application/octet-stream")},
    )

    assert response.status_code == 201, response.text
    assert response.json()["size_bytes"] == len(data)
