"""End-to-end benchmarks under pytest-benchmark: echo-ack 100x16 and broadcast-1000 against
ferrosio, python-socketio and Node, load from the shared ``bench/sio-load.js``.

    pytest benches --benchmark-only              # the table; JSON with --benchmark-json=F
    pytest benches                               # cheap: ferrosio only, smoke sizes

Each benchmark is one load run (its time is the run's; one round): the server is started
fresh on a free port beforehand (benches/e2e.py's commands and setup, compare.py's readiness
probe and stop), and stopped after. What counts is in ``extra_info``: the server's CPU µs per
message (``server_cpu_us_per_msg``: acks, or deliveries for broadcast), latency percentiles
(``latency_p50_us``, ``latency_p99_us``: ack round trip, or fan-out delay), the rate, and how
busy the machine was. A run that is not clean (errors, losses, drops) fails its test.

Without ``--benchmark-only`` only ferrosio runs, at smoke sizes: python-socketio and Node need
``.bench/`` set up (a venv, an npm install), which the full run does on first use.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHES = Path(__file__).resolve().parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


e2e = _load("ferrosio_bench_e2e", BENCHES / "e2e.py")
LOADGEN = e2e.SHARED / "bench" / "sio-load.js"
SCENARIOS = {sc.key: sc for sc in e2e.SCENARIOS}
SCENARIO_KEYS = ["echo-ack-100x16-32B", "broadcast-1000"]
SERVERS = ["ferrosio", "psio", "node"]
READY_TIMEOUT = 60.0  # seconds for a server to answer its first handshake
# where each scenario keeps its latency percentiles in sio-load's JSON
LATENCY = {"echo-ack": "rtt_us", "broadcast": "latency_us"}
RATE = {"echo-ack": "acks_per_s", "broadcast": "deliveries_per_s"}
NOT_CLEAN = ("connect_failures", "unexpected_packets", "lost_connections", "lost", "errors")


def _full_run(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_only", default=False))


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    """The shared compare.py, for its readiness probe and its stop (stdlib only)."""
    if not e2e.COMPARE.exists() or not LOADGEN.exists():
        pytest.skip(f"{e2e.COMPARE.parent} not found (the shared folder; set FERROSIO_SHARED)")
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH (sio-load.js needs Node >= 18)")
    return _load("ferrosio_bench_compare", e2e.COMPARE)


@pytest.fixture(scope="module")
def server_env() -> tuple[dict[str, str], dict[str, str]]:
    """(commands, environment) of the servers; sets .bench/ up (python-socketio, socket.io)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH (the Node server's socket.io)")
    e2e.WORK.mkdir(exist_ok=True)
    return e2e.server_commands(e2e.setup_psio()), e2e.node_env(e2e.setup_node())


@pytest.fixture
def server(
    request: pytest.FixtureRequest, compare: ModuleType
) -> Iterator[tuple[str, subprocess.Popen[bytes], int]]:
    """(name, process, port) of the server under test, started fresh; stopped after."""
    name = request.param
    if name == "ferrosio":
        cmds = e2e.server_commands("python")
        env = dict(os.environ)
    elif not _full_run(request.config):
        pytest.skip(f"{name}: only with --benchmark-only (needs .bench/ set up)")
    else:
        cmds, env = request.getfixturevalue("server_env")
    port = compare.free_port()
    argv = cmds[name].replace("{port}", str(port)).split()
    logs = e2e.WORK / "logs" / "pytest-benchmark"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=compare.raise_nofile(65536),
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not compare.ws_ready(port):
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode} (log: {log.name})")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer a handshake in {READY_TIMEOUT:.0f} s")
            time.sleep(0.2)
        yield name, proc, port
    finally:
        compare.stop(proc)


def _load_run(scenario: Any, pid: int, port: int, full: bool) -> dict[str, Any]:
    args = scenario.args if full else scenario.smoke
    cmd = ["node", str(LOADGEN), "--scenario", scenario.kind, "--port", str(port),
           "--server-pid", str(pid), "--server-tree", *args]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"no JSON from sio-load (exit {p.returncode})\n{p.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.timeout(900)
@pytest.mark.parametrize("server", SERVERS, indirect=True)
@pytest.mark.parametrize("scenario_key", SCENARIO_KEYS)
def test_e2e(
    benchmark: Any,
    request: pytest.FixtureRequest,
    server: tuple[str, subprocess.Popen[bytes], int],
    scenario_key: str,
    e2e_table: list[dict[str, Any]],
) -> None:
    name, proc, port = server
    scenario = SCENARIOS[scenario_key]
    full = _full_run(request.config)
    benchmark.group = scenario_key if full else f"{scenario_key} (smoke sizes)"
    time.sleep(1 if full else 0.2)  # let the server settle after its first handshake
    run = benchmark.pedantic(_load_run, args=(scenario, proc.pid, port, full), rounds=1)
    res = run.get("results", {})
    latency = res.get(LATENCY[scenario.kind]) or {}
    benchmark.extra_info.update(
        {
            "server": name,
            "scenario": scenario_key,
            "loadgen_args": " ".join(scenario.args if full else scenario.smoke),
            "server_cpu_us_per_msg": res.get("server_cpu_us_per_msg"),
            "latency_p50_us": latency.get("p50"),
            "latency_p99_us": latency.get("p99"),
            "rate_per_s": res.get(RATE[scenario.kind]),
            "server_cpu_pct": res.get("server_cpu_pct"),
            "machine_busy_pct": res.get("machine_busy_pct"),
            "ok": run.get("ok"),
        }
    )
    e2e_table.append(benchmark.extra_info)
    bad = {k: res[k] for k in NOT_CLEAN if res.get(k)}
    assert run.get("ok") and not bad, f"{name} {scenario_key}: ok={run.get('ok')} {bad}"
