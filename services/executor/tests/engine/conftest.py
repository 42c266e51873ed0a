"""A hand-written fake ComfyUI that replays B.5.5 sequences, and a ComfyClient
on it."""

import asyncio
import uuid

import aiohttp
import pytest
from aiohttp import web

from comfyserve.executor.engine.client import ClientTimeouts, ComfyClient

IMAGE = {"filename": "o_00001_.png", "subfolder": "", "type": "output"}
FAST = ClientTimeouts(
    request_s=5.0,
    silence_probe_s=0.2,
    reconnect_backoff_min_s=0.01,
    reconnect_backoff_max_s=0.05,
)


class FakeComfy:
    """Speaks one generation's /prompt, /ws, /queue, /history and /interrupt.

    `script(prompt_id)` returns the messages sent for a run; the string "DROP"
    in it closes the socket there, "RECONNECTED" waits until the client opened
    a new one, and history is written after the script. Prompts run one at a
    time in the order queued, as ComfyUI runs them, each message going to the
    client's socket of the moment.
    """

    def __init__(self, generation: str, script, outputs=None, status=None) -> None:
        self.generation = generation
        self.script = script
        self.outputs = outputs if outputs is not None else {"3": {"images": [IMAGE]}}
        self.status = status or {
            "status_str": "success",
            "completed": True,
            "messages": [],
        }
        self.sockets: dict[str, web.WebSocketResponse] = {}
        # Every WebSocket opened, by client id, in order.
        self.connections: list[str] = []
        self.connected = asyncio.Event()
        self.queued = asyncio.Event()
        self.serial = asyncio.Lock()
        self.history: dict[str, dict] = {}
        self.running: list[str] = []
        self.pending: list[str] = []
        self.interrupts: list[dict] = []
        # Every POST /prompt body, as sent.
        self.bodies: list[dict] = []
        self.deleted: list[str] = []
        self.prompt_status = 200
        self.hold = asyncio.Event()
        self.hold.set()
        self.tasks: set[asyncio.Task] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/queue", self.queue)
        app.router.add_post("/queue", self.queue_post)
        app.router.add_post("/interrupt", self.interrupt)
        app.router.add_get("/history/{prompt_id}", self.history_get)
        return app

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        client_id = request.query["clientId"]
        self.sockets[client_id] = socket
        self.connections.append(client_id)
        self.connected.set()
        hello = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}
        await socket.send_json({"type": "status", "data": hello})
        async for _ in socket:
            pass
        return socket

    async def prompt(self, request: web.Request) -> web.StreamResponse:
        if self.prompt_status == 500:
            return web.Response(status=500, text="500 Internal Server Error")
        body = await request.json()
        self.bodies.append(body)
        self.queued.set()
        if self.generation == "g1":
            prompt_id = str(uuid.uuid4())  # G1 ignores the requested id
        else:
            prompt_id = body["prompt_id"]
        self.pending.append(prompt_id)
        task = asyncio.create_task(self.execute(prompt_id, body["client_id"]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response(
            {"prompt_id": prompt_id, "number": 0, "node_errors": {}}
        )

    async def execute(self, prompt_id: str, client_id: str) -> None:
        async with self.serial:
            if prompt_id in self.deleted:
                return
            self.pending.remove(prompt_id)
            self.running.append(prompt_id)
            await self._run_script(prompt_id, client_id)
            self.running.remove(prompt_id)
            self.history[prompt_id] = {"outputs": self.outputs, "status": self.status}
            # Every generation sends this last, after writing history.
            await self.send(client_id, msg("executing", node=None, prompt_id=prompt_id))

    async def _run_script(self, prompt_id: str, client_id: str) -> None:
        for message in self.script(prompt_id):
            if message == "DROP":
                self.connected.clear()
                await self.sockets[client_id].close()
            elif message == "RECONNECTED":
                await self.connected.wait()
            elif message == "HOLD":
                await self.hold.wait()
            else:
                await self.send(client_id, message)

    async def send(self, client_id: str, message: dict | bytes) -> None:
        socket = self.sockets[client_id]
        if socket.closed:
            return
        if isinstance(message, bytes):
            await socket.send_bytes(message)
        else:
            await socket.send_json(message)

    async def queue(self, request: web.Request) -> web.Response:
        def item(pid):
            return [0, pid, {}, {"client_id": "c"}, ["3"]]

        return web.json_response(
            {
                "queue_running": [item(p) for p in self.running],
                "queue_pending": [item(p) for p in self.pending],
            }
        )

    async def queue_post(self, request: web.Request) -> web.Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            self.deleted.append(prompt_id)
            if prompt_id in self.pending:
                self.pending.remove(prompt_id)
        return web.Response()

    async def interrupt(self, request: web.Request) -> web.Response:
        self.interrupts.append(await request.json())
        return web.Response()

    async def history_get(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})


def msg(kind, **data):
    return {"type": kind, "data": data}


def g1_script(pid):
    return [
        msg("status", status={"exec_info": {"queue_remaining": 1}}),
        msg("execution_start", prompt_id=pid),
        msg("execution_cached", nodes=[], prompt_id=pid),
        msg("executing", node="1", prompt_id=pid),
        msg("executing", node="3", prompt_id=pid),
        msg("executed", node="3", output={"images": [IMAGE]}, prompt_id=pid),
        msg("executing", node=None, prompt_id="someone-else"),
    ]


async def serve(fake: FakeComfy):
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def make_client():
    cleanups = []

    async def make(fake: FakeComfy, timeouts: ClientTimeouts = FAST) -> ComfyClient:
        runner, url = await serve(fake)
        session = aiohttp.ClientSession()
        cleanups.append((runner, session, fake))
        return ComfyClient(url, session, timeouts=timeouts)

    yield make
    for runner, session, fake in cleanups:
        fake.hold.set()
        await session.close()
        await runner.cleanup()
