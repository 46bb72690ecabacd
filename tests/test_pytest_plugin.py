"""ferrosio's pytest plugin (ferrosio/pytest_plugin.py) and its helpers (ferrosio/testing.py).

Used directly here (this module's ``sio`` fixture is the app), and in pytest sessions of their
own (``pytester``, in a subprocess) the way users run it: pytest-asyncio in strict and auto
mode, anyio's plugin with and without pytest-asyncio, the ``ferrosio_app`` ini option.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import ferrosio
from _harness import ws_open_packet
from ferrosio._load import _MAX_BUCKET, Histogram
from ferrosio.testing import EventRecorder, EventTimeout, RecordingClient, RunningServer


@pytest.fixture
def sio() -> ferrosio.AsyncServer:
    app = ferrosio.AsyncServer()

    @app.event
    def echo(sid: str, data: Any) -> Any:
        return data

    @app.event
    async def shout(sid: str, text: str) -> None:
        await app.emit("shout", text.upper())

    @app.event
    async def twice(sid: str, n: int) -> None:
        await app.emit("n", n, to=sid)
        await app.emit("n", n + 1, to=sid)

    @app.event
    async def kick(sid: str) -> None:
        await app.disconnect(sid)

    return app


# ---------------------------------------------------------------------------- in this suite ---
async def test_a_client_talks_to_the_server(
    sio_server: RunningServer, sio_client: RecordingClient
) -> None:
    assert sio_server.url == f"http://127.0.0.1:{sio_server.port}"
    assert sio_client.connected
    assert await sio_client.call("echo", {"a": [1, 2]}) == {"a": [1, 2]}


async def test_next_hands_out_events_in_order_whether_they_came_before_or_after(
    sio_client: RecordingClient,
) -> None:
    await sio_client.call("twice", 1)  # both emits precede the ack
    assert await sio_client.received.next("n") == 1
    assert await sio_client.received.next("n") == 2
    await sio_client.emit("twice", 10)
    assert [await sio_client.received.next("n") for _ in range(2)] == [10, 11]
    assert sio_client.received.received("n") == [1, 2, 10, 11]


async def test_every_client_records_a_broadcast(sio_client_factory: Any) -> None:
    a, b = await sio_client_factory(), await sio_client_factory()
    await a.emit("shout", "hi")
    assert await a.received.next("shout") == "HI"
    assert await b.received.next("shout") == "HI"
    b.received.assert_received("shout", "HI")
    b.received.assert_not_received("whisper")


async def test_a_wait_in_vain_fails_and_says_what_came(sio_client: RecordingClient) -> None:
    await sio_client.call("twice", 5)
    with pytest.raises(EventTimeout, match=r"no 'never' event .* received: / n \(5,\)"):
        await sio_client.received.next("never", timeout=0.2)
    with pytest.raises(AssertionError, match=r"no event 'n' with \(7,\)"):
        sio_client.received.assert_received("n", 7)
    with pytest.raises(AssertionError, match="unexpected 'n' event"):
        sio_client.received.assert_not_received("n")
    assert issubclass(EventTimeout, ferrosio.exceptions.FerrosioError)


async def test_the_client_records_its_disconnect(sio_client: RecordingClient) -> None:
    await sio_client.emit("kick")
    assert await sio_client.received.next("disconnect") == sio_client.reason.SERVER_DISCONNECT


def test_the_recorder_without_a_client() -> None:
    rec = EventRecorder()
    rec.record("a", "/", 1, 2)
    rec.record("a", "/chat")
    assert rec.received("a") == [(1, 2)]
    assert rec.received("a", "/chat") == [None]
    assert rec.names() == ["a", "a"]
    rec.clear()
    assert not rec.events


async def test_the_recorder_keeps_its_bound_and_says_what_it_forgot() -> None:
    rec = EventRecorder(max_events=3)
    for i in range(5):
        rec.record("n", "/", i)
    assert rec.received("n") == [2, 3, 4] and rec.dropped == 2
    assert [await rec.next("n") for _ in range(3)] == [2, 3, 4]  # the forgotten are skipped
    with pytest.raises(EventTimeout, match="2 older ones forgotten"):
        await rec.next("n", timeout=0.05)
    with pytest.raises(ValueError):
        EventRecorder(max_events=0)


def test_a_synchronous_test_gets_a_server_in_a_thread(sio_server_thread: Any) -> None:
    # a blocking handshake from the test's thread: the server's loop is elsewhere
    assert sio_server_thread.url == f"http://127.0.0.1:{sio_server_thread.port}"
    packet = ws_open_packet(sio_server_thread.port)
    assert packet is not None and packet["sid"]


def test_import_ferrosio_imports_neither_pytest_nor_the_plugin() -> None:
    code = (
        "import sys, ferrosio, ferrosio.testing; "
        "bad = [m for m in ('pytest', '_pytest', 'ferrosio.pytest_plugin') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_load_histogram_is_bounded() -> None:
    h = Histogram()
    for us in (0.5, 1, 3, 1e3, 1e6, 1e12, 1e15):  # far past the last bucket: clamped
        h.add(us)
    assert max(h.counts) == _MAX_BUCKET and len(h.counts) <= _MAX_BUCKET + 1
    assert h.summary()["p50"] > 500


def test_sio_load_reports_server_cpu_and_latencies(sio_load: Any) -> None:
    report = sio_load.run("echo", "x" * 32, clients=2, inflight=2, duration=0.5, warmup=0.2)
    info = report.extra_info()
    assert report.messages > 0 and report.errors == 0
    assert report.server_cpu_s >= 0
    assert {"server_cpu_us_per_msg", "latency_p50_us", "latency_p99_us"} <= set(info)


# ------------------------------------------------------------ in sessions of their own ---
APP = """
import ferrosio

def create_app():
    sio = ferrosio.AsyncServer()

    @sio.event
    def echo(sid, data):
        return data

    @sio.event
    async def shout(sid, text):
        await sio.emit("shout", text.upper())

    return sio

sio = create_app()
"""

TESTS = """
{header}

async def test_echo(sio_client):
    assert await sio_client.call("echo", [1, "two"]) == [1, "two"]

async def test_shout(sio_client_factory):
    a, b = await sio_client_factory(), await sio_client_factory()
    await a.emit("shout", "hi")
    assert await b.received.next("shout") == "HI"
"""

CONFTEST = """
import pytest
from app import create_app

@pytest.fixture
def sio():
    return create_app()
"""

HEADERS = {
    "asyncio-strict": "import pytest\npytestmark = pytest.mark.asyncio",
    "asyncio-auto": "",
    "anyio": (
        "import pytest\npytestmark = pytest.mark.anyio\n\n"
        "@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'"
    ),
}
MODES = {  # name -> (header, pytest options)
    "pytest-asyncio-strict": ("asyncio-strict", ["-o", "asyncio_mode=strict"]),
    "pytest-asyncio-auto": ("asyncio-auto", ["-o", "asyncio_mode=auto"]),
    "anyio": ("anyio", ["-p", "no:asyncio"]),
    "anyio-beside-pytest-asyncio-strict": ("anyio", ["-o", "asyncio_mode=strict"]),
}


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    opts = ["-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"]
    if not any(ep.value == "ferrosio.pytest_plugin" for ep in entry_points(group="pytest11")):
        opts += ["-p", "ferrosio.pytest_plugin"]  # a development install without the entry point
    return pytester.runpytest_subprocess(*opts, *args, timeout=120)


@pytest.mark.parametrize("mode", list(MODES))
def test_the_fixtures_under_each_async_plugin(pytester: pytest.Pytester, mode: str) -> None:
    header, options = MODES[mode]
    pytester.makepyfile(app=APP, conftest=CONFTEST)
    pytester.makepyfile(test_user=textwrap.dedent(TESTS.format(header=HEADERS[header])))
    result = _run(pytester, *options)
    result.assert_outcomes(passed=2)


def test_the_app_named_in_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP)
    pytester.makeini("[pytest]\nferrosio_app = app:sio\nasyncio_mode = auto\n")
    pytester.makepyfile(test_user=textwrap.dedent(TESTS.format(header="")))
    _run(pytester).assert_outcomes(passed=2)


def test_without_an_app_the_error_says_how_to_give_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=textwrap.dedent(TESTS.format(header="")))
    result = _run(pytester, "-o", "asyncio_mode=auto")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*define a `sio` fixture*ferrosio_app = module:attribute*"])


def test_the_ten_line_file_of_the_docs(pytester: pytest.Pytester) -> None:
    """docs/testing.md's example test file, as it is there, against an app with ``echo``."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    block = doc.split("<!-- the ten-line test file", 1)[1].split("```python\n", 1)[1]
    test_file = block.split("```", 1)[0]
    assert len(test_file.splitlines()) == 10
    pytester.makepyfile(myapp=APP, test_user=test_file)
    _run(pytester, "-o", "asyncio_mode=auto").assert_outcomes(passed=1)
