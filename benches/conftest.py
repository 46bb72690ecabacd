"""Benchmark-suite fixtures.

Without pytest-benchmark installed, ``benchmark`` falls back to a stand-in that calls the
function once and returns its result: the codec cases still run their equality checks (this
is what a plain ``pytest benches/test_codec.py`` does in an environment without the plugin).
With the plugin, its own fixture is used, untouched.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pytest

# ferrosio's pytest plugin (sio_load, for test_app_bench.py): registered by an installed
# ferrosio's pytest11 entry point; loaded here for a development install made before it.
if not any(ep.value == "ferrosio.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["ferrosio.pytest_plugin"]

if importlib.util.find_spec("pytest_benchmark") is None:

    class _RunOnce:
        """The part of pytest-benchmark's fixture the suite uses, without timing."""

        def __init__(self) -> None:
            self.group: str | None = None
            self.extra_info: dict[str, Any] = {}

        def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        def pedantic(
            self,
            fn: Callable[..., Any],
            args: tuple[Any, ...] = (),
            kwargs: dict[str, Any] | None = None,
            **_: Any,
        ) -> Any:
            return fn(*args, **(kwargs or {}))

    @pytest.fixture
    def benchmark() -> _RunOnce:
        return _RunOnce()


def pytest_configure(config: pytest.Config) -> None:
    # test_e2e_smoke.py marks itself timeout(...): known even without pytest-timeout installed
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")


# End-to-end rows (test_e2e_bench.py, test_app_bench.py): pytest-benchmark's own table has
# only the run's time; the figures that count are in extra_info, printed here as one table.
_E2E_ROWS = pytest.StashKey[list[dict[str, Any]]]()


@pytest.fixture
def e2e_table(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Rows (benchmark extra_info dicts) for the end-of-session table."""
    return request.config.stash.setdefault(_E2E_ROWS, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_E2E_ROWS, [])
    if not rows:
        return

    def num(v: Any, digits: int = 1) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    tr = terminalreporter
    tr.write_sep("-", "end to end: server CPU per message and latency (extra_info)")
    tr.write_line(
        "| scenario | server | server CPU µs/msg | latency p50 µs | latency p99 µs | rate/s |"
    )
    tr.write_line("|---|---|---:|---:|---:|---:|")
    for r in rows:
        tr.write_line(
            f"| {r.get('scenario')} | {r.get('server')} | "
            f"{num(r.get('server_cpu_us_per_msg'), 2)} | {num(r.get('latency_p50_us'), 0)} | "
            f"{num(r.get('latency_p99_us'), 0)} | {num(r.get('rate_per_s'), 0)} |"
        )
