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

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from _harness import ServerProcess

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


@pytest.fixture(params=["native", "asgi"])
def chat_server(
    request: pytest.FixtureRequest, tmp_path: Path, spawn_server: Callable[..., ServerProcess]
) -> tuple[str, Path]:
    """The demo on ferrosio's own listener, and through ``ferrosio.ASGIApp`` under uvicorn."""
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
    # the server must not depend on the working directory
    asgi = ["--asgi"] if request.param == "asgi" else []
    srv = spawn_server(
        f"chat-demo-{request.param}", [sys.executable, str(SERVER), *asgi], cwd=tmp_path
    )
    return srv.url, srv.log_path


@pytest.mark.timeout(180)
def test_chat_in_chromium(chat_server: tuple[str, Path], tmp_path: Path) -> None:
    url, log_path = chat_server
    try:
        run = subprocess.run(
            ["node", str(SPEC), "--url", url, "--screenshot", str(tmp_path / "chat.png")],
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
