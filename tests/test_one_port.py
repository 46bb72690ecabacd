"""One port beside an ASGI application (``other_asgi_app=``): ferrosio's listener serves the
Socket.IO path natively and forwards every other HTTP request to a FastAPI app.

Checked against real peers: FastAPI/Starlette as the application, aiohttp and raw sockets as
HTTP clients, python-socketio's AsyncClient and the official npm socket.io-client (a small
script, tests/node/one_port.mjs) on the same port at the same time. What is checked: the
JSON route and the ASGI scope, a request body, a streaming response whose chunks arrive as the
app sends them, the app's own 404 and a failing route (500), the body bound (413), lifespan
startup/shutdown (and a failing startup), a client leaving mid-response (the app's ``send``
raises an ``OSError``, ``receive`` says ``http.disconnect``, and the app was held back by the
response queue's bound instead of producing everything), and the app's WebSocket routes,
which are refused with 404.

No timing assertions; every wait is bounded by WAIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import socketio
import websockets
import websockets.exceptions

import ferrosio
from ferrosio._ferrosio import HTTP_BODY_CREDIT

fastapi = pytest.importorskip("fastapi")
from fastapi import FastAPI, Request, Response  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402

from _harness import WAIT  # noqa: E402

NODE_DIR = Path(__file__).parent / "node"
MAX_BODY = 200_000
FLOOD_CHUNK = 64 * 1024
FLOOD_CHUNKS = 2_000  # 128 MiB: far more than the socket buffers between app and client


class Flood:
    """A raw ASGI app streaming FLOOD_CHUNKS chunks; records how its response ended."""

    def __init__(self) -> None:
        self.produced = 0
        self.ended: asyncio.Future[tuple[str, str]] | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert self.ended is not None
        request = await receive()
        assert request["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(FLOOD_CHUNKS):
                await send(
                    {"type": "http.response.body", "body": b"x" * FLOOD_CHUNK, "more_body": True}
                )
                self.produced += 1
        except OSError as exc:
            after = await asyncio.wait_for(receive(), WAIT)
            self.ended.set_result((type(exc).__name__, after["type"]))
            raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.ended.set_result(("complete", ""))


def make_app(state: dict[str, Any]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        state["started"] = True
        yield {"greeting": "hi"}
        state["stopped"] = True

    app = FastAPI(lifespan=lifespan)
    gates = [asyncio.Event() for _ in range(3)]
    state["gates"] = gates
    flood = Flood()
    state["flood"] = flood

    @app.get("/api/hello")
    async def hello(request: Request) -> dict[str, Any]:
        return {
            "hello": "world",
            "greeting": request.state.greeting,
            "path": request.url.path,
            "query": request.url.query,
            "client": request.client.host if request.client else None,
            "scheme": request.url.scheme,
            "agent": request.headers.get("x-test"),
        }

    @app.post("/api/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/api/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i, gate in enumerate(gates):
                yield f"chunk{i}\n".encode()
                # The next chunk only once the client has seen this one.
                await asyncio.wait_for(gate.wait(), WAIT)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/api/fail")
    async def fail() -> None:
        raise RuntimeError("boom (expected by the test)")

    @app.websocket("/ws")
    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text("hello")

    app.mount("/raw/flood", flood)
    return app


def make_sio() -> ferrosio.AsyncServer:
    sio = ferrosio.AsyncServer(max_http_buffer_size=MAX_BODY)

    @sio.event
    def echo(sid: str, data: Any) -> Any:
        return data

    return sio


class OnePort:
    def __init__(self, sio: ferrosio.AsyncServer, state: dict[str, Any], port: int) -> None:
        self.sio = sio
        self.state = state
        self.url = f"http://127.0.0.1:{port}"
        self.port = port


@pytest_asyncio.fixture
async def one_port() -> AsyncIterator[OnePort]:
    state: dict[str, Any] = {}
    sio = make_sio()
    port = await sio.start("127.0.0.1", 0, other_asgi_app=make_app(state))
    try:
        yield OnePort(sio, state, port)
    finally:
        await sio.shutdown()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=WAIT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


async def test_json_route_sees_a_proper_scope_after_startup(
    one_port: OnePort, http: aiohttp.ClientSession
) -> None:
    assert one_port.state["started"] is True, "startup ran before start() returned"
    async with http.get(f"{one_port.url}/api/hello?a=1&b=%20", headers={"X-Test": "t"}) as r:
        assert r.status == 200
        assert r.headers["content-type"] == "application/json"
        assert await r.json() == {
            "hello": "world",
            "greeting": "hi",  # lifespan state reaches the request
            "path": "/api/hello",
            "query": "a=1&b=%20",
            "client": "127.0.0.1",
            "scheme": "http",
            "agent": "t",
        }


async def test_unknown_routes_get_the_apps_404(
    one_port: OnePort, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{one_port.url}/nope") as r:
        assert r.status == 404
        assert await r.json() == {"detail": "Not Found"}


async def test_post_body_is_echoed_and_bounded(
    one_port: OnePort, http: aiohttp.ClientSession
) -> None:
    body = os.urandom(MAX_BODY)
    async with http.post(f"{one_port.url}/api/echo", data=body) as r:
        assert r.status == 200
        assert await r.read() == body
    async with http.post(f"{one_port.url}/api/echo", data=body + b"!") as r:
        assert r.status == 413, "a body over max_http_buffer_size never reaches the app"
    async with http.get(f"{one_port.url}/api/hello") as r:
        assert r.status == 200, "and the server keeps serving"


async def test_streaming_chunks_arrive_as_sent(
    one_port: OnePort, http: aiohttp.ClientSession
) -> None:
    gates = one_port.state["gates"]
    async with http.get(f"{one_port.url}/api/stream") as r:
        assert r.status == 200
        for i, gate in enumerate(gates):
            # The app sends chunk i+1 only after this read: a buffered response would hang here.
            line = await asyncio.wait_for(r.content.readline(), WAIT)
            assert line == f"chunk{i}\n".encode()
            gate.set()
        assert await asyncio.wait_for(r.content.read(), WAIT) == b""


async def test_a_failing_route_is_a_500_and_serving_goes_on(
    one_port: OnePort, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{one_port.url}/api/fail") as r:
        assert r.status == 500
    async with http.get(f"{one_port.url}/api/hello") as r:
        assert r.status == 200


async def test_a_client_leaving_mid_response_ends_the_apps_send(one_port: OnePort) -> None:
    flood: Flood = one_port.state["flood"]
    flood.ended = asyncio.get_running_loop().create_future()
    reader, writer = await asyncio.open_connection("127.0.0.1", one_port.port)
    writer.write(b"GET /raw/flood/ HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 200")
    # Some of the body arrives; then the client stops reading and goes away.
    await asyncio.wait_for(reader.readexactly(FLOOD_CHUNK), WAIT)
    writer.transport.abort()
    how, then = await asyncio.wait_for(flood.ended, WAIT)
    assert how == "ClientDisconnectedError"
    assert then == "http.disconnect"
    # Held back by the bounded response queue: nowhere near everything was produced.
    assert HTTP_BODY_CREDIT <= flood.produced < FLOOD_CHUNKS
    assert issubclass(ferrosio.exceptions.ClientDisconnectedError, OSError)


async def test_websocket_routes_of_the_app_are_refused(
    one_port: OnePort, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"ws://127.0.0.1:{one_port.port}/ws", open_timeout=WAIT):
            pass
    assert refused.value.response.status_code == 404
    async with http.get(f"{one_port.url}/api/hello") as r:
        assert r.status == 200


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_socketio_clients_and_http_on_the_same_port(
    one_port: OnePort, http: aiohttp.ClientSession, transports: list[str]
) -> None:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("node and tests/node/node_modules are needed (npm install --prefix tests/node)")
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(one_port.url, transports=transports, wait_timeout=WAIT)
    try:
        node = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "one_port.mjs"),
            one_port.url,
            ",".join(transports),
            "/api/hello",
            cwd=NODE_DIR,
            stdout=asyncio.subprocess.PIPE,
        )

        async def get(path: str) -> Any:
            async with http.get(one_port.url + path) as r:
                assert r.status == 200
                return await r.json()

        async def calls() -> list[Any]:
            return [await client.call("echo", {"n": i}, timeout=WAIT) for i in range(20)]

        # The acks one after the other, while the HTTP requests run concurrently with them.
        acks, pages = await asyncio.wait_for(
            asyncio.gather(calls(), asyncio.gather(*(get("/api/hello") for _ in range(20)))),
            WAIT,
        )
        assert acks == [{"n": i} for i in range(20)]
        assert all(p["hello"] == "world" for p in pages)
        out, _ = await asyncio.wait_for(node.communicate(), WAIT)
        assert node.returncode == 0
        got = json.loads(out.decode().strip().splitlines()[-1])
        assert got["ack"] == {"from": "node"}
        assert got["http"]["status"] == 200 and got["http"]["body"]["hello"] == "world"
        assert got["transport"] == transports[-1]
    finally:
        await client.disconnect()


async def test_shutdown_runs_the_apps_shutdown_hook() -> None:
    state: dict[str, Any] = {}
    sio = make_sio()
    task = asyncio.create_task(sio.serve("127.0.0.1", 0, other_asgi_app=make_app(state)))
    try:
        for _ in range(int(WAIT / 0.01)):
            if sio.port is not None or task.done():
                break
            await asyncio.sleep(0.01)
        assert sio.port is not None
        assert state["started"] is True
    finally:
        await sio.shutdown()
        await asyncio.wait_for(task, WAIT)
    assert state["stopped"] is True


async def test_a_failing_startup_is_an_error_at_start() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    sio = make_sio()
    with pytest.raises(ferrosio.exceptions.LifespanError, match="no database"):
        await sio.start("127.0.0.1", 0, other_asgi_app=FastAPI(lifespan=lifespan))
    assert sio.port is None, "nothing listens"


async def test_an_app_without_lifespan_is_served(http: aiohttp.ClientSession) -> None:
    async def plain(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sio = make_sio()
    port = await sio.start("127.0.0.1", 0, other_asgi_app=plain)
    try:
        async with http.get(f"http://127.0.0.1:{port}/anything") as r:
            assert r.status == 204
    finally:
        await sio.shutdown()
