"""``ferrosio.ASGIApp`` under real ASGI servers (uvicorn, hypercorn, granian), beside a FastAPI
app with a REST route on the same port (tests/apps/asgi_app.py serving the reference app).

Each server is checked with the official npm ``socket.io-client`` (tests/node/contract.mjs, the
whole reference contract) and python-socketio's client, over WebSocket, polling and the
upgrade; then the REST route, the lifespan hooks, 404 without another app, and the mount under
a prefix (``root_path``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import socketio

from _harness import APPS, TESTS, WAIT, ServerProcess, transport_params
from ferrosio.asgi import _engine_path

ASGI_SERVERS = ["uvicorn", "hypercorn", "granian"]
NODE_DIR = TESTS / "node"
SCRIPT_TIMEOUT = 600


def _spawn(
    spawn_server: Callable[..., ServerProcess],
    server: str,
    mode: str = "wrap",
    app: str = "reference",
) -> ServerProcess:
    srv = spawn_server(
        f"asgi-{server}-{mode}",
        [
            sys.executable,
            str(APPS / "asgi_app.py"),
            "--server",
            server,
            "--app",
            app,
            "--mode",
            mode,
        ],
        start=False,
    )
    if mode == "mount":
        srv.ready_path = "/ws/socket.io/"
    srv.start()
    return srv


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def _psio_echo(url: str, transports: list[str], path: str = "socket.io") -> dict[str, Any]:
    client = socketio.AsyncClient()
    await client.connect(url, transports=transports, socketio_path=path, wait_timeout=WAIT)
    try:
        text = await client.call("echo", {"a": [1, "x"]}, timeout=WAIT)
        binary = await client.call("echo", b"\x00\xff", timeout=WAIT)
        if transports[-1] == "websocket" and client.transport() != "websocket":
            # python-socketio's client upgrades right after connecting; wait for it, bounded.
            for _ in range(int(WAIT / 0.05)):
                if client.transport() == "websocket":
                    break
                await asyncio.sleep(0.05)
        after = await client.call("echo", "after", timeout=WAIT)
        return {
            "text": text,
            "binary": binary,
            "after": after,
            "transport": client.transport(),
        }
    finally:
        await client.disconnect()


@pytest.fixture(scope="module", params=ASGI_SERVERS)
def asgi_server(request: pytest.FixtureRequest) -> Any:
    """The reference app through ``ASGIApp(sio, other_asgi_app=fastapi_app)`` on each server."""
    made: list[ServerProcess] = []

    def spawn(name: str, argv: list[str], *, start: bool = True, **_: Any) -> ServerProcess:
        srv = ServerProcess(name, argv)
        made.append(srv)
        if start:
            srv.start()
        return srv

    srv = _spawn(spawn, request.param)
    yield srv
    for s in made:
        s.close()


@pytest.fixture(scope="module")
def node_runs(asgi_server: ServerProcess) -> Callable[[str], dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}

    def get(transports: str) -> dict[str, Any]:
        if transports not in cache:
            if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
                pytest.fail("node and tests/node/node_modules are needed", pytrace=False)
            asgi_server.check_alive()
            proc = subprocess.run(
                ["node", "contract.mjs", asgi_server.url, transports],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=SCRIPT_TIMEOUT,
            )
            results = {}
            for line in proc.stdout.splitlines():
                try:
                    r = json.loads(line)
                    results[r["name"]] = r
                except (ValueError, KeyError, TypeError):
                    pass
            cache[transports] = {"rc": proc.returncode, "results": results, "stderr": proc.stderr}
        return cache[transports]

    return get


@pytest.mark.timeout(SCRIPT_TIMEOUT + 60)
@pytest.mark.parametrize("transports", transport_params())
def test_official_npm_client_passes_the_contract(
    node_runs: Callable[[str], dict[str, Any]], transports: str
) -> None:
    run = node_runs(transports)
    assert run["rc"] == 0, run["stderr"][-4000:]
    failed = {k: v.get("error", "")[:300] for k, v in run["results"].items() if not v["ok"]}
    assert len(run["results"]) >= 22, run["results"].keys()
    assert not failed, failed


@pytest.mark.parametrize("transports", transport_params())
async def test_python_socketio_client(asgi_server: ServerProcess, transports: str) -> None:
    got = await _psio_echo(asgi_server.url, transports.split(","))
    assert got == {
        "text": {"a": [1, "x"]},
        "binary": b"\x00\xff",
        "after": "after",
        "transport": transports.split(",")[-1],
    }


def test_rest_route_and_lifespan_on_the_same_port(asgi_server: ServerProcess) -> None:
    assert _get(f"{asgi_server.url}/api/hello") == (200, b'{"hello":"world"}')
    status, body = _get(f"{asgi_server.url}/api/lifespan")
    assert status == 200 and json.loads(body) == ["startup"]
    status, body = _get(f"{asgi_server.url}/nowhere")
    assert status == 404 and b"Not Found" in body, "FastAPI's own 404"


def test_engine_io_errors_are_the_engines(asgi_server: ServerProcess) -> None:
    status, body = _get(f"{asgi_server.url}/socket.io/?EIO=3&transport=polling")
    assert (status, json.loads(body)) == (
        400,
        {"code": 5, "message": "Unsupported protocol version"},
    )
    status, body = _get(f"{asgi_server.url}/socket.io/?EIO=4&transport=polling&sid=nope")
    assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})


def test_shutdown_hook_runs(spawn_server: Callable[..., ServerProcess]) -> None:
    srv = _spawn(spawn_server, "uvicorn")
    srv.signal(signal.SIGTERM)
    assert srv.proc is not None
    srv.proc.wait(timeout=WAIT)
    log = srv.log_path.read_text()
    assert "STARTUP" in log and "SHUTDOWN" in log, log


async def test_without_another_app_other_paths_are_404(
    spawn_server: Callable[..., ServerProcess],
) -> None:
    srv = _spawn(spawn_server, "uvicorn", mode="bare")
    assert _get(f"{srv.url}/api/hello")[0] == 404
    got = await _psio_echo(srv.url, ["polling", "websocket"])
    assert got["text"] == {"a": [1, "x"]} and got["transport"] == "websocket"


@pytest.mark.parametrize("transports", transport_params())
async def test_mounted_under_a_prefix_in_fastapi(
    spawn_server: Callable[..., ServerProcess], transports: str
) -> None:
    """``app.mount("/ws", ASGIApp(sio))``: the endpoint is /ws/socket.io/ (root_path)."""
    srv = _spawn(spawn_server, "uvicorn", mode="mount")
    got = await _psio_echo(srv.url, transports.split(","), path="/ws/socket.io")
    assert got["text"] == {"a": [1, "x"]} and got["transport"] == transports.split(",")[-1]
    assert _get(f"{srv.url}/api/hello")[0] == 200
    assert _get(f"{srv.url}/socket.io/?EIO=4&transport=polling")[0] == 404


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/socket.io/", "", "/socket.io/"),
        ("/ws/socket.io/", "/ws", "/socket.io/"),  # prefix kept in path (Starlette >= 0.33)
        ("/socket.io/", "/ws", "/socket.io/"),  # prefix stripped by the framework
        ("/ws", "/ws", "/"),
        ("/wsx/socket.io/", "/ws", "/wsx/socket.io/"),  # not under the prefix
    ],
)
def test_root_path_is_stripped_once(path: str, root: str, expected: str) -> None:
    assert _engine_path({"path": path, "root_path": root}) == expected


def test_polling_body_over_max_http_buffer_size_is_413(asgi_server: ServerProcess) -> None:
    """The body is read whole only up to max_http_buffer_size (1e6 in the reference app)."""
    status, body = _get(f"{asgi_server.url}/socket.io/?EIO=4&transport=polling")
    sid = json.loads(body[1:])["sid"]
    req = urllib.request.Request(
        f"{asgi_server.url}/socket.io/?EIO=4&transport=polling&sid={sid}",
        data=b"4" + b"x" * 1_000_001,
        method="POST",
        headers={"content-type": "text/plain;charset=UTF-8"},
    )
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as res:
            status = res.status
    except urllib.error.HTTPError as e:
        status = e.code
    assert status == 413
    status, body = _get(f"{asgi_server.url}/socket.io/?EIO=4&transport=polling&sid={sid}")
    assert (status, json.loads(body)["code"]) == (400, 1), "the session is gone"


async def test_websocket_message_over_max_http_buffer_size_closes_1009(
    asgi_server: ServerProcess,
) -> None:
    import websockets

    async with websockets.connect(asgi_server.ws_url, max_size=None) as ws:
        opened = await asyncio.wait_for(ws.recv(), WAIT)
        assert isinstance(opened, str) and opened.startswith("0{")
        await ws.send("4" + "x" * 1_000_001)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
