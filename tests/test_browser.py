"""The chat demo in a real browser: Debian's Chromium, the official socket.io-client bundle.

The demo itself is what is tested, so its server is started from examples/ (no copy under
tests/apps): examples/chat/server.py, on a free port, with this interpreter (so the ferrosio
under test), through the harness's ``spawn_server``. Then tests/browser/chat.spec.mjs runs:
two pages, one forced to long-polling and one upgraded to WebSocket, join a room and talk to
each other. The script prints one JSON line.

Needs, and fails (not skips) without, what CI installs:
  apt-get install -y chromium                  # /usr/bin/chromium
  npm install --prefix tests/browser           # playwright-core (no browser download)
  npm install --prefix tests/node              # socket.io-client: the page's client bundle
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _harness import HOST, ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "examples" / "chat" / "server.py"
SPEC = REPO / "tests" / "browser" / "chat.spec.mjs"
BROWSER_DEPS = REPO / "tests" / "browser" / "node_modules" / "playwright-core"
CLIENT_DIST = REPO / "tests" / "node" / "node_modules" / "socket.io-client" / "dist"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

SPEC_TIMEOUT = 90.0  # the script stops itself at 55 s; this is the hang guard

# Must match CHECKS in tests/browser/chat.spec.mjs.
CHECKS = [
    "a_connected",
    "b_connected",
    "a_joined",
    "b_joined",
    "members_listed",
    "join_notice_seen",
    "a_to_b",
    "b_to_a",
    "sender_sees_own",
    "a_stays_polling",
    "b_upgraded_websocket",
    "duplicate_username_refused",
    "oversized_text_rejected",
    "no_page_errors",
]


def _require(ok: bool, message: str) -> None:
    if not ok:
        pytest.fail(message, pytrace=False)


def _require_browser() -> None:
    _require(
        Path(CHROMIUM).is_file(),
        f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium`",
    )
    _require(shutil.which("node") is not None, "`node` is not on PATH (Node >= 18 is needed)")
    _require(
        BROWSER_DEPS.is_dir(),
        "tests/browser/node_modules is missing: run `npm install --prefix tests/browser`",
    )
    _require(
        (CLIENT_DIST / "socket.io.min.js").is_file(),
        "the socket.io-client bundle is missing: run `npm install --prefix tests/node`",
    )


@pytest.fixture(params=["native", "asgi"])
def chat_server(
    request: pytest.FixtureRequest, tmp_path: Path, spawn_server: Callable[..., ServerProcess]
) -> tuple[str, Path]:
    """The demo on ferrosio's own listener, and through ``ferrosio.ASGIApp`` under uvicorn."""
    _require_browser()
    # the server must not depend on the working directory
    asgi = ["--asgi"] if request.param == "asgi" else []
    srv = spawn_server(
        f"chat-demo-{request.param}", [sys.executable, str(SERVER), *asgi], cwd=tmp_path
    )
    return srv.url, srv.log_path


def tls_chat_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The chat demo over HTTPS (``--certfile``/``--keyfile``; a ``trustme`` certificate)."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    log_path = tmp_path / "chat-https.log"
    argv = [sys.executable, str(SERVER), "--port", str(port), "--host", HOST]
    argv += ["--certfile", str(cert), "--keyfile", str(key)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        deadline = time.monotonic() + 60
        while True:  # ready: an Engine.IO open packet over HTTPS
            try:
                with urllib.request.urlopen(
                    f"https://{HOST}:{port}/socket.io/?EIO=4&transport=polling",
                    context=context,
                    timeout=5,
                ) as r:
                    if r.read().startswith(b"0{"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chat server over https did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield f"https://{HOST}:{port}", log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.timeout(180)
def test_chat_in_chromium(chat_server: tuple[str, Path], tmp_path: Path) -> None:
    run_chat_spec(chat_server, tmp_path)


@pytest.mark.timeout(180)
def test_chat_over_https_in_chromium(tmp_path: Path) -> None:
    """The same page served over HTTPS by ferrosio itself: polling and WebSocket (wss) through
    the upgrade, Chromium ignoring the test CA's certificate errors explicitly."""
    _require_browser()
    with contextlib.contextmanager(tls_chat_server)(tmp_path) as served:
        run_chat_spec(served, tmp_path, "--ignore-https-errors")


def run_chat_spec(served: tuple[str, Path], tmp_path: Path, *extra: str) -> None:
    url, log_path = served
    try:
        run = subprocess.run(
            ["node", str(SPEC), "--url", url, "--screenshot", str(tmp_path / "chat.png"), *extra],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=SPEC_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"chat.spec.mjs still running after {SPEC_TIMEOUT} s\nstdout: {exc.stdout!r}\n"
            f"server log:\n{log_path.read_text()}",
            pytrace=False,
        )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    context = (
        f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}\n"
        f"server log:\n{log_path.read_text()}"
    )
    assert lines, f"chat.spec.mjs printed no JSON result\n{context}"
    result = json.loads(lines[-1])
    assert sorted(result["checks"]) == sorted(CHECKS), f"check list drifted\n{context}"
    failed = [name for name in CHECKS if result["checks"][name] is not True]
    assert not failed, f"failed checks: {failed}\nerrors: {result['errors']}\n{context}"
    assert result["transports"] == {"a": "polling", "b": "websocket"}, context
    assert result["ok"] is True and run.returncode == 0, context
