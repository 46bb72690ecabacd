"""Benchmarking an app's own handler the way a user does (docs/testing.md): the plugin's
``sio_load`` fixture under pytest-benchmark, here on the reference app's ``echo``.

    pytest benches/test_app_bench.py --benchmark-only     # 100 clients x 16 calls in flight
    pytest benches/test_app_bench.py                      # smoke sizes

``sio_load`` serves the app (the ``sio`` fixture) from a background thread of this process
and drives ferrosio clients from a child process, so this process's CPU time is the server's:
``extra_info`` gets the server CPU µs per call and latency percentiles.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import ferrosio

REFERENCE_APP = Path(__file__).resolve().parent.parent / "examples" / "reference_app.py"


@pytest.fixture
def sio() -> ferrosio.AsyncServer:
    """A fresh copy of examples/reference_app.py's server."""
    spec = importlib.util.spec_from_file_location("reference_app_bench", REFERENCE_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server: ferrosio.AsyncServer = module.sio
    return server


@pytest.mark.timeout(300)
def test_echo_handler(
    sio_load: Any, benchmark: Any, request: pytest.FixtureRequest, e2e_table: list[Any]
) -> None:
    if request.config.getoption("benchmark_only", default=False):
        load = {"clients": 100, "inflight": 16, "duration": 5, "warmup": 1}
    else:
        load = {"clients": 4, "inflight": 2, "duration": 0.5, "warmup": 0.2}
    benchmark.group = "your app: echo handler (ferrosio clients)"
    report = benchmark.pedantic(sio_load.run, args=("echo", "x" * 32), kwargs=load, rounds=1)
    benchmark.extra_info.update(report.extra_info())
    row = {**report.extra_info(), "server": "ferrosio (in-process)"}
    e2e_table.append({**row, "rate_per_s": report.messages_per_s})
    assert report.messages > 0 and report.errors == 0
