"""CI smoke test of ``benches/cluster_broadcast.py`` (issue 12's cross-node benchmark).

Runs it with tiny sizes, ferrosio and Node on one redis-server each, at a fixed rate and in the
closed loop, and asserts only that every run was ok and lost nothing: nothing about speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent
SCRIPT = BENCHES / "cluster_broadcast.py"
CLUSTER_DEPS = BENCHES.parent / "tests" / "cluster" / "node_modules"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("rate", ["20", "0"], ids=["paced", "closed-loop"])
def test_cluster_broadcast_smoke(tmp_path: Path, rate: str) -> None:
    for tool in ("redis-server", "node"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH")
    if not (CLUSTER_DEPS / "@socket.io" / "redis-adapter").exists():
        pytest.skip("npm install --prefix tests/cluster first")
    out = tmp_path / "raw.json"
    p = subprocess.run(
        [
            *(sys.executable, str(SCRIPT)),
            *("--kinds", "ferrosio,node", "--conns", "40", "--rate", rate),
            *("--duration", "2", "--warmup", "0.5", "--repeat", "1", "--out", str(out)),
        ],
        cwd=BENCHES.parent,
        capture_output=True,
        text=True,
        timeout=280,
    )
    log = f"--- stderr\n{p.stderr[-6000:]}\n--- stdout\n{p.stdout[-3000:]}"
    assert p.returncode == 0, log
    raw = json.loads(out.read_text())
    for kind in ("ferrosio", "node"):
        (run,) = raw[kind]
        assert run["ok"], f"{kind}: {run}\n{log}"
        assert run["deliveries"] > 0 and run["lost"] == 0, f"{kind}: {run}\n{log}"
        if rate == "0":
            assert run["inflight"] == 8, run
    assert "| ferrosio | 1/1 |" in p.stdout and "| node | 1/1 |" in p.stdout, log
