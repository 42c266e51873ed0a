"""ComfyUI's WebSocket against the whole product (API.md Part C.2, 27, 29, 30):
a plain `websockets` client, prompts through the native `POST /prompt`, real
executors and ComfyUI behind them."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.support import Product, invert_graph, slow_graph, wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Message = dict[str, Any]
# Generous: a CPU ComfyUI behind a busy machine.
_RECEIVE_LIMIT_S = 180


@asynccontextmanager
async def native_socket(
    product: Product, query: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    """A socket past its hello frame."""
    url = product.base_url.replace("http://", "ws://") + f"/ws?{query}"
    async with websockets.connect(url, additional_headers=headers) as socket:
        hello = await receive(socket)
        assert hello["type"] == "status"
        yield socket


def token_query(key: str, client_id: str) -> str:
    return f"clientId={client_id}&token={key}"


async def receive(socket: ClientConnection) -> Message:
    async with asyncio.timeout(_RECEIVE_LIMIT_S):
        while True:
            frame = await socket.recv()
            # Binary previews carry no JSON; none of these graphs has a sampler.
            if isinstance(frame, str):
                message: Message = json.loads(frame)
                return message


async def until_done(socket: ClientConnection, prompt_id: str) -> list[Message]:
    """Every message up to the prompt's `executing{node: null}`."""
    seen: list[Message] = []
    while not seen or seen[-1] != {
        "type": "executing",
        "data": {"node": None, "prompt_id": prompt_id},
    }:
        seen.append(await receive(socket))
    return seen


async def before_handshake(socket: ClientConnection) -> list[Message]:
    """What the socket received before its answer to a handshake sent now."""
    await socket.send(json.dumps({"type": "feature_flags", "data": {}}))
    seen = [await receive(socket)]
    while seen[-1]["type"] != "feature_flags":
        seen.append(await receive(socket))
    return seen[:-1]


async def queue_prompt(
    product: Product, key: str, graph: dict[str, Any], client_id: str
) -> str:
    async with product.client(key) as client:
        answer = await client.post(
            "/prompt", json={"prompt": graph, "client_id": client_id}
        )
    assert answer.status_code == 200, answer.text
    prompt_id: str = answer.json()["prompt_id"]
    return prompt_id


def types(messages: list[Message]) -> list[str]:
    return [message["type"] for message in messages]


def ordered_subset(seen: list[str], expected: list[str]) -> bool:
    """`expected` occurs in `seen` in this order (other messages between)."""
    remaining = iter(seen)
    return all(kind in remaining for kind in expected)


async def test_a_run_in_comfyui_order_reaches_only_its_socket(
    product: Product,
) -> None:
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    async with (
        native_socket(product, token_query(product.key_a, client_id)) as own,
        native_socket(product, token_query(product.key_a, "observer")) as observer,
        # Another tenant's socket under the very same client id.
        native_socket(product, token_query(product.key_b, client_id)) as foreign,
    ):
        prompt_id = await queue_prompt(
            product, product.key_a, invert_graph((10, 20, 30), "ws"), client_id
        )
        seen = await until_done(own, prompt_id)
        observed = await before_handshake(observer)
        leaked = await before_handshake(foreign)

    kinds = types(seen)
    assert kinds[:4] == ["status", "status", "execution_start", "execution_cached"]
    assert kinds[-3:] == ["execution_success", "status", "executing"]
    assert seen[3]["data"]["nodes"] == []
    assert {m["data"]["prompt_id"] for m in seen if m["type"] != "status"} == {
        prompt_id
    }
    executing = [m["data"]["node"] for m in seen if m["type"] == "executing"]
    assert "3" in executing
    executed = [m["data"] for m in seen if m["type"] == "executed"]
    assert [item["node"] for item in executed] == ["3"]
    (image,) = executed[0]["output"]["images"]
    assert image["subfolder"] == prompt_id
    assert image["type"] == "output"
    assert image["filename"].startswith("ws")
    assert image["filename"].endswith(".png")
    # `executing{3}` precedes `executed{3}`, as on ComfyUI.
    assert kinds.index("executed") > executing.index("3")
    assert observed
    assert set(types(observed)) == {"status"}
    assert leaked == []


async def test_a_runtime_error_carries_comfyuis_error_payload(
    product: Product,
) -> None:
    # Valid to every check, but scaled down to nothing: ComfyUI raises at
    # runtime. (A `../x` prefix, API.md's example, is refused at submit here.)
    graph = invert_graph((0, 0, 0))
    graph["2"] = {
        "class_type": "ImageScaleBy",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "nearest-exact",
            "scale_by": 0.01,
        },
    }
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    async with native_socket(product, token_query(product.key_a, client_id)) as own:
        prompt_id = await queue_prompt(product, product.key_a, graph, client_id)
        seen = await until_done(own, prompt_id)

    assert types(seen)[-3:] == ["execution_error", "status", "executing"]
    assert "execution_success" not in types(seen)
    error = seen[-3]["data"]
    assert error["prompt_id"] == prompt_id
    assert error["node_id"] == "2"
    assert error["node_type"] == "ImageScaleBy"
    assert "2" not in error["executed"]
    assert "sizes should be greater than 0" in error["exception_message"]
    assert error["exception_type"]
    assert isinstance(error["traceback"], list)
    assert isinstance(error["current_inputs"], dict)
    assert isinstance(error["current_outputs"], list)
    async with product.client() as client:
        history = (await client.get(f"/history/{prompt_id}")).json()
    assert history[prompt_id]["status"]["status_str"] == "error"
    assert history[prompt_id]["status"]["completed"] is False


@pytest.mark.parametrize("targeted", [False, True], ids=["global", "by_prompt_id"])
async def test_interrupt_mid_run_ends_the_prompt_as_interrupted(
    product: Product, targeted: bool
) -> None:
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    async with (
        native_socket(product, token_query(product.key_a, client_id)) as own,
        product.client() as client,
    ):
        prompt_id = await queue_prompt(
            product, product.key_a, slow_graph(12, 0x808080), client_id
        )
        seen = [await receive(own)]
        while seen[-1]["type"] != "executing":
            seen.append(await receive(own))
        # Someone else's prompt id interrupts nothing.
        stray = await client.post("/interrupt", json={"prompt_id": str(uuid.uuid4())})
        assert stray.status_code == 200
        still = (await client.get(f"/workflows/{prompt_id}")).json()
        assert still["status"] == "running"
        body = {"prompt_id": prompt_id} if targeted else None
        assert (await client.post("/interrupt", json=body)).status_code == 200
        seen += await until_done(own, prompt_id)
        await wait_for_status(client, prompt_id, {"cancelled"})

    assert types(seen)[-3:] == ["execution_interrupted", "status", "executing"]
    interrupted = seen[-3]["data"]
    assert interrupted["prompt_id"] == prompt_id
    assert set(interrupted) >= {"node_id", "node_type", "executed"}
    assert "execution_success" not in types(seen)


async def test_credentials_by_basic_or_token_and_a_bad_one_refused(
    product: Product,
) -> None:
    pair = base64.b64encode(f"comfy:{product.key_a}".encode()).decode()
    async with native_socket(
        product, "clientId=basic", {"Authorization": f"Basic {pair}"}
    ) as socket:
        assert await before_handshake(socket) == []
    async with native_socket(product, token_query(product.key_a, "t")) as socket:
        assert await before_handshake(socket) == []
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with native_socket(product, token_query("csk_not_a_key", "bad")):
            pass
    assert refused.value.response.status_code == 401
