"""CI smoke test of the benchmark suite: ``benches/e2e.py --smoke``.

Runs the same code as the full benchmark (setup under .bench/, the codec cases once each
with their equality checks, every end-to-end scenario through compare.py against ferrosio,
python-socketio and Node) with tiny sizes. Asserts only that every run was ok (no errors,
losses or unexpected packets) and that every table was produced: nothing about speed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent
E2E = BENCHES / "e2e.py"


def _e2e_module() -> object:
    spec = importlib.util.spec_from_file_location("ferrosio_bench_e2e", E2E)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


# First use also creates .bench/ (a venv with python-socketio, an npm install): allow for it.
@pytest.mark.timeout(900)
def test_e2e_smoke(tmp_path: Path) -> None:
    e2e = _e2e_module()
    compare: Path = e2e.COMPARE  # type: ignore[attr-defined]
    if not compare.exists():
        pytest.skip(f"{compare} not found (the shared folder; set FERROSIO_SHARED)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not on PATH")
    out = tmp_path / "smoke.md"
    p = subprocess.run(
        [sys.executable, str(E2E), "--smoke", "--out", str(out)],
        cwd=BENCHES.parent,
        capture_output=True,
        text=True,
        timeout=840,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    log = f"--- stderr (tail)\n{p.stderr[-12000:]}\n--- stdout (tail)\n{p.stdout[-6000:]}"
    assert p.returncode == 0, log
    text = out.read_text()
    assert "## Codec (micro)" in text, log
    for sc in e2e.SCENARIOS:  # type: ignore[attr-defined]
        assert f"| {sc.key} |" in text, f"no summary row for {sc.key}\n{log}"
        assert f"### {sc.key} (smoke sizes)" in text, f"no compare.py table for {sc.key}\n{log}"
    assert "## Problems\n\nnone" in text, log
