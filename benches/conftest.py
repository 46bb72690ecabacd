"""Benchmark-suite fixtures.

Without pytest-benchmark installed, ``benchmark`` falls back to a stand-in that calls the
function once and returns its result: the codec cases still run their equality checks (this
is what a plain ``pytest benches/test_codec.py`` does in an environment without the plugin).
With the plugin, its own fixture is used, untouched.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

if importlib.util.find_spec("pytest_benchmark") is None:

    class _RunOnce:
        """The part of pytest-benchmark's fixture the suite uses, without timing."""

        def __init__(self) -> None:
            self.group: str | None = None
            self.extra_info: dict[str, Any] = {}

        def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    @pytest.fixture
    def benchmark() -> _RunOnce:
        return _RunOnce()


def pytest_configure(config: pytest.Config) -> None:
    # test_e2e_smoke.py marks itself timeout(...): known even without pytest-timeout installed
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")
