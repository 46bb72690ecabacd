#!/usr/bin/env python3
"""End-to-end benchmarks: ferrosio's reference app beside python-socketio and socket.io (Node).

    python benches/e2e.py            # full run (~25 min on 2 cores); tables -> benches/results/
    python benches/e2e.py --smoke    # same code path, tiny sizes (< 2 min); asserts only that
                                     # every run was ok and every table was produced

Run it with the interpreter that has ferrosio installed (``.venv/bin/python``): that
interpreter starts ``examples/reference_app.py``. The rest is set up idempotently under
``<repo>/.bench/`` (gitignored): a venv with python-socketio (``reference/requirements.txt``
of the shared folder) and an ``npm install`` of socket.io (``reference/package.json``).

Each scenario is one run of the shared ``bench/compare.py`` (servers interleaved
ferrosio, psio, node, ``--repeat`` times; fresh server per measurement; load from
``bench/sio-load.js``). Its markdown tables are kept verbatim, and a summary is computed
from its raw JSON: the figure that counts is the server's CPU time per message
(``server_cpu_us_per_msg``; per connection for the connect scenario), with ratios between
medians of the same compare.py run.

The shared folder is ``<repo>/../shared`` unless FERROSIO_SHARED says otherwise.
Stdlib only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCHES = REPO / "benches"
WORK = REPO / ".bench"
SHARED = Path(os.environ.get("FERROSIO_SHARED", REPO.parent / "shared")).resolve()
COMPARE = SHARED / "bench" / "compare.py"
REFERENCE = SHARED / "reference"
PSIO_VENV = WORK / "psio-venv"
NODE_DIR = WORK / "node"

SERVER_NAMES = ("ferrosio", "psio", "node")
# Not run by default: the shared upper-bound server (Node `ws` plus just enough Engine.IO and
# Socket.IO for the scenarios, no JSON parsing): what this machine's kernel and a WebSocket
# library cost with no Socket.IO semantics. `--servers ferrosio,limit` measures that floor.
EXTRA_SERVERS = ("limit", "limit-uws")
SOCKETIFY_VENV = WORK / "socketify-venv"


# ---------------------------------------------------------------- scenarios ----


@dataclass
class Scenario:
    key: str  # file name stem and table anchor
    title: str
    kind: str  # compare.py --scenario
    args: list[str]  # sio-load.js options (full run)
    smoke: list[str]  # sio-load.js options (--smoke)
    metric: str = "server_cpu_us_per_msg"  # what the summary ranks on
    extra: dict[str, Any] = field(default_factory=dict)
    repeat: int | None = None  # overrides --repeat for a long scenario (full run only)


def _echo(conns: int, inflight: int, size: int) -> tuple[list[str], list[str]]:
    full = ["--conns", str(conns), "--inflight", str(inflight), "--payload-bytes", str(size),
            "--duration", "10", "--warmup", "2", "--procs", "2"]  # fmt: skip
    smoke = ["--conns", "20", "--inflight", str(min(inflight, 4)), "--payload-bytes", str(size),
             "--duration", "1", "--warmup", "0.5", "--procs", "1"]  # fmt: skip
    return full, smoke


SCENARIOS: list[Scenario] = [
    Scenario("echo-ack-100x1-32B", "echo-ack, 100 conns x 1 in flight, 32 B", "echo-ack",
             *_echo(100, 1, 32)),
    Scenario("echo-ack-100x16-32B", "echo-ack, 100 conns x 16 in flight, 32 B", "echo-ack",
             *_echo(100, 16, 32)),
    Scenario("echo-ack-100x1-1KiB", "echo-ack, 100 conns x 1 in flight, 1 KiB", "echo-ack",
             *_echo(100, 1, 1024)),
    Scenario("echo-ack-100x16-1KiB", "echo-ack, 100 conns x 16 in flight, 1 KiB", "echo-ack",
             *_echo(100, 16, 1024)),
    Scenario("broadcast-1000", "broadcast to 1,000 receivers (closed loop), 32 B", "broadcast",
             ["--conns", "1000", "--duration", "10", "--warmup", "2", "--procs", "2"],
             ["--conns", "20", "--duration", "1", "--warmup", "0.5", "--procs", "1"]),
    Scenario("connect-2000", "connection rate: 2,000 connects, 100 handshakes in parallel",
             "connect",
             ["--conns", "2000", "--concurrency", "100", "--hold", "1", "--procs", "2"],
             ["--conns", "20", "--concurrency", "10", "--hold", "0", "--procs", "1"],
             metric="server_cpu_us_per_conn"),
    Scenario("idle-10000", "idle connections: 10,000 held for 5 s (server RSS growth)",
             "connect",
             ["--conns", "10000", "--concurrency", "200", "--hold", "5", "--procs", "2"],
             ["--conns", "50", "--concurrency", "25", "--hold", "1", "--procs", "1"],
             metric="server_bytes_per_conn"),
    # Flat cost as connections grow: compare with echo-ack-100x1-32B of the same run.
    Scenario("echo-ack-10000x1-32B", "echo-ack, 10,000 conns x 1 in flight, 32 B", "echo-ack",
             ["--conns", "10000", "--inflight", "1", "--payload-bytes", "32", "--duration", "10",
              "--warmup", "2", "--procs", "2", "--concurrency", "200"],
             ["--conns", "200", "--inflight", "1", "--payload-bytes", "32", "--duration", "1",
              "--warmup", "0.5", "--procs", "1"]),
    # As many connections as the machine lets one process hold (RLIMIT_NOFILE hard limit
    # 20,000 here), held past the 25 s ping interval: every one must answer a ping.
    Scenario("idle-19000-heartbeat", "idle connections: 19,000 held for 35 s, heartbeats on",
             "connect",
             ["--conns", "19000", "--concurrency", "200", "--hold", "35", "--procs", "2"],
             ["--conns", "50", "--concurrency", "25", "--hold", "1", "--procs", "1"],
             metric="server_bytes_per_conn", repeat=1, extra={"pings_per_conn": 1}),
]  # fmt: skip


# ------------------------------------------------------------------ helpers ----


def log(msg: str) -> None:
    print(f"e2e: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Runs a setup command; its output goes to stderr (stdout carries only the tables)."""
    return subprocess.run(cmd, check=True, text=True, stdout=sys.stderr, **kw)


def run_group(cmd: list[str], **kw: Any) -> tuple[int, str, str]:
    """Runs `cmd` in a process group of its own; if we are interrupted, the whole group goes
    (compare.py leaves its server and sio-load running when it dies). -> (rc, stdout, stderr)"""
    proc = subprocess.Popen(cmd, start_new_session=True, text=True, **kw)
    try:
        o, e = proc.communicate()
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(1)
        proc.wait()
        raise
    return proc.returncode, o or "", e or ""


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def out(cmd: list[str], **kw: Any) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
        return str(p.stdout).strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def sha(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def get(d: Any, path: str) -> Any:
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def median(xs: list[Any]) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


# -------------------------------------------------------------------- setup ----


def setup_psio() -> Path:
    """A venv with python-socketio + uvicorn + uvloop, rebuilt when requirements.txt changes."""
    req = REFERENCE / "requirements.txt"
    marker = PSIO_VENV / ".requirements.sha256"
    py = PSIO_VENV / "bin" / "python"
    want = sha(req)
    if py.exists() and marker.exists() and marker.read_text().strip() == want:
        return py
    log(f"setting up {PSIO_VENV} (python-socketio, {req})")
    shutil.rmtree(PSIO_VENV, ignore_errors=True)
    # the base interpreter, not this venv's site-packages
    run([sys.executable, "-m", "venv", str(PSIO_VENV)])
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)])
    marker.write_text(want + "\n")
    return py


def setup_socketify() -> Path:
    """A venv with socketify (uWebSockets) for the shared bench/limit_socketify.py."""
    py = SOCKETIFY_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import socketify"]).returncode == 0:
        return py
    log(f"setting up {SOCKETIFY_VENV} (socketify)")
    shutil.rmtree(SOCKETIFY_VENV, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(SOCKETIFY_VENV)])
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "socketify"])
    return py


def setup_node() -> Path:
    """`npm install` of the reference package.json; returns the node_modules for NODE_PATH."""
    pkg = REFERENCE / "package.json"
    mods = NODE_DIR / "node_modules"
    marker = NODE_DIR / ".package.sha256"
    want = sha(pkg)
    if (mods / "socket.io" / "package.json").exists() and marker.exists() \
            and marker.read_text().strip() == want:  # fmt: skip
        return mods
    log(f"npm install in {NODE_DIR} ({pkg})")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(pkg, NODE_DIR / "package.json")
    run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix",
         str(NODE_DIR)])  # fmt: skip
    marker.write_text(want + "\n")
    return mods


def check_ferrosio(attempts: int) -> tuple[str, Path]:
    """ferrosio importable by this interpreter (a rebuild may be under way: retry).
    Returns its version and its package folder."""
    code = (
        "import ferrosio, ferrosio._ferrosio as f, os; "
        "print(f.__version__); print(os.path.dirname(ferrosio.__file__))"
    )
    for i in range(attempts):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if p.returncode == 0:
            version, pkg = p.stdout.split()[-2:]
            return version, Path(pkg)
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        log(f"ferrosio not importable ({last}); attempt {i + 1}/{attempts}")
        if i + 1 < attempts:
            time.sleep(30)
    raise SystemExit(f"e2e: ferrosio is not importable by {sys.executable}")


def fingerprint(pkg: Path) -> str:
    """Names, sizes and mtimes of ferrosio's files: changes when it is rebuilt or edited."""
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*")):
        if f.suffix in (".py", ".so", ".pyd") and "__pycache__" not in f.parts:
            st = f.stat()
            h.update(f"{f.relative_to(pkg)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def wait_stable(pkg: Path, quiet_s: float = 60, limit_s: float = 900) -> bool:
    """Waits until ferrosio's files have not changed for `quiet_s` and it imports."""
    t0 = time.monotonic()
    last, since = fingerprint(pkg), time.monotonic()
    while time.monotonic() - t0 < limit_s:
        time.sleep(5)
        fp = fingerprint(pkg)
        if fp != last:
            last, since = fp, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            ok = subprocess.run([sys.executable, "-c", "import ferrosio"], capture_output=True)
            if ok.returncode == 0:
                return True
            since = time.monotonic()
    return False


def server_commands(psio_py: Path | str, socketify_py: Path | str = "python") -> dict[str, str]:
    """compare.py's ``--server`` command of each server (``{port}`` is replaced)."""
    return {
        "ferrosio": f"{sys.executable} {REPO / 'examples' / 'reference_app.py'} --port {{port}}",
        "psio": f"{psio_py} {REFERENCE / 'psio_app.py'} --port {{port}}",
        "node": f"node {REFERENCE / 'node_app.js'} --port {{port}}",
        "limit": f"node {SHARED / 'bench' / 'limit_ws.js'} --port {{port}}",
        "limit-uws": f"{socketify_py} {SHARED / 'bench' / 'limit_socketify.py'} --port {{port}}",
    }


def node_env(node_mods: Path) -> dict[str, str]:
    """This environment with ``node_mods`` first on NODE_PATH (for the Node servers)."""
    env = dict(os.environ)
    env["NODE_PATH"] = os.pathsep.join(p for p in (str(node_mods), env.get("NODE_PATH", "")) if p)
    return env


# -------------------------------------------------------------- machine info ----


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    return "?"


def _proc_stat() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (user nice system
    idle iowait irq softirq steal; guest time is already counted in user)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def machine_busy(seconds: float = 1.0) -> float | None:
    """% of all cores busy over `seconds` (from /proc/stat), before anything of ours runs."""
    try:
        b0, t0 = _proc_stat()
        time.sleep(seconds)
        b1, t1 = _proc_stat()
        return 100.0 * (b1 - b0) / max(1, t1 - t0)
    except (OSError, ValueError, IndexError):
        return None


class OtherLoad:
    """CPU used by *other* processes while it runs, in % of the whole machine: all CPU busy time
    (/proc/stat) minus this process's and its reaped descendants' (compare.py, the servers,
    sio-load and its workers are all waited for, so their CPU time adds up in os.times())."""

    def __init__(self) -> None:
        self.b0, self.t0 = _proc_stat()
        self.ours0 = self._ours()

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def pct(self) -> float | None:
        try:
            b1, t1 = _proc_stat()
        except (OSError, ValueError, IndexError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        capacity = (t1 - self.t0) / hz
        others = (b1 - self.b0) / hz - (self._ours() - self.ours0)
        return max(0.0, 100.0 * others / capacity) if capacity > 0 else None


def busy_processes(min_pct: float = 10.0, seconds: float = 1.0) -> list[str]:
    """Other processes using >= min_pct of a core (e.g. a Rust build sharing the machine)."""

    def ticks() -> dict[int, tuple[str, int]]:
        res = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                st = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            name = st[st.index("(") + 1 : st.rindex(")")]
            f = st[st.rindex(")") + 2 :].split()
            res[int(d)] = (name, int(f[11]) + int(f[12]))
        return res

    hz = os.sysconf("SC_CLK_TCK")
    a = ticks()
    time.sleep(seconds)
    b = ticks()
    busy = []
    for pid, (name, t) in b.items():
        if pid in a and pid != os.getpid():
            pct = 100.0 * (t - a[pid][1]) / hz / seconds
            if pct >= min_pct:
                busy.append(f"{name} ({pct:.0f}%)")
    return busy


def pkg_versions(python: Path | str, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "v = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: v[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: v[n] = '-'\n"
        "print(json.dumps(v))"
    )
    try:
        return json.loads(out([str(python), "-c", code, *names]))  # type: ignore[no-any-return]
    except ValueError:
        return dict.fromkeys(names, "?")


def machine_info(psio_py: Path, node_mods: Path, ferrosio_version: str) -> list[str]:
    sio_pkg = node_mods / "socket.io" / "package.json"
    sio_ver = json.loads(sio_pkg.read_text())["version"] if sio_pkg.exists() else "?"
    eio_pkg = node_mods / "engine.io" / "package.json"
    eio_ver = json.loads(eio_pkg.read_text())["version"] if eio_pkg.exists() else "?"
    ours = pkg_versions(sys.executable, ["ferrosio", "orjson", "uvloop", "pytest-benchmark"])
    theirs = pkg_versions(psio_py, ["python-socketio", "python-engineio", "uvicorn", "uvloop"])
    commit = out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return [
        f"- CPU: {cpu_model()}, nproc {os.cpu_count()}, RAM {mem_total()}, "
        f"kernel {platform.release()}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Python {platform.python_version()} ({sys.executable}); "
        f"Node {out(['node', '--version'])}",
        f"- ferrosio {ferrosio_version} (git {commit}{' + local changes' if dirty else ''}), "
        f"orjson {ours['orjson']}, uvloop {ours['uvloop']}",
        f"- python-socketio {theirs['python-socketio']}, python-engineio "
        f"{theirs['python-engineio']}, uvicorn {theirs['uvicorn']}, uvloop {theirs['uvloop']} "
        "(uvicorn, loop=uvloop, one process)",
        f"- socket.io {sio_ver} (engine.io {eio_ver}) on Node, one process",
    ]


# ------------------------------------------------------------ codec (micro) ----


def run_codec(smoke: bool, stamp: str) -> tuple[list[str], bool]:
    """benches/test_codec.py through pytest-benchmark; a markdown table from its JSON."""
    jpath = WORK / "runs" / stamp / "codec.json"
    jpath.parent.mkdir(parents=True, exist_ok=True)
    has_plugin = (
        subprocess.run(
            [sys.executable, "-c", "import pytest_benchmark"], capture_output=True
        ).returncode
        == 0
    )
    cmd = [sys.executable, "-m", "pytest", str(BENCHES / "test_codec.py"), "-q",
           "-p", "no:cacheprovider", "-rs"]  # fmt: skip
    if smoke or not has_plugin:
        cmd += ["--benchmark-disable"] if has_plugin else []
    else:
        cmd += [f"--benchmark-json={jpath}", "--benchmark-columns=min,median,mean,ops,rounds",
                "--benchmark-sort=name", "--benchmark-warmup=on"]  # fmt: skip
    log("codec: " + " ".join(cmd))
    rc, stdout, stderr = run_group(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sys.stderr.write(stdout[-20000:] + stderr[-5000:])
    ok = rc == 0
    lines = ["## Codec (micro): ferrosio vs python-socketio / python-engineio", ""]
    if not ok:
        tail = "\n".join(stdout.splitlines()[-15:])
        lines += [f"**codec tests failed (pytest exit {rc})**:", "", "```", tail, "```"]
        return lines, False
    skipped = [ln for ln in stdout.splitlines() if ln.startswith("SKIPPED")]
    if smoke or not has_plugin or not jpath.exists():
        why = "smoke: equality checks only" if smoke else "pytest-benchmark not installed"
        lines += [f"(not timed: {why}; pytest: {stdout.strip().splitlines()[-1]})", ""]
        return lines + [f"- {s}" for s in skipped], True
    data = json.loads(jpath.read_text())
    for b in data["benchmarks"]:
        b["stats"].pop("data", None)  # every timing: ~100 MB in all
    jpath.write_text(json.dumps(data, indent=1))
    rows: dict[tuple[str, str], dict[str, float]] = {}
    notes: dict[str, str] = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        key = (info.get("op", "?"), info.get("case", "?"))
        rows.setdefault(key, {})[info.get("impl", "?")] = b["stats"]["median"] * 1e6
        notes[info.get("case", "?")] = info.get("note", "")
    lines += [
        "Median time per operation in µs (pytest-benchmark, same process, same inputs; outputs "
        "checked equal first). `psio` = socketio.packet + engineio.packet, i.e. python-socketio's "
        "whole path to/from the WebSocket frame text, like ferrosio's row; `sio only` = "
        "socketio.packet alone. Ratio = psio / ferrosio (> 1: ferrosio faster).",
        "",
        "| op | case | ferrosio µs | psio µs | sio only µs | psio / ferrosio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (op, case), r in sorted(rows.items()):
        f, ps = r.get("ferrosio"), r.get("psio")
        ratio = f"{ps / f:.1f}x" if f and ps else "-"
        lines.append(
            f"| {op} | {case} ({notes.get(case, '')}) | {fmt(f, 2)} | {fmt(ps, 2)} | "
            f"{fmt(r.get('psio-sio-only'), 2)} | {ratio} |"
        )
    lines += [""] + [f"- {s}" for s in skipped]
    return lines, True


# ----------------------------------------------------------------- e2e runs ----


def run_scenario(sc: Scenario, servers: list[tuple[str, str]], smoke: bool, repeat: int,
                 stamp: str, env: dict[str, str]) -> tuple[str, dict[str, Any] | None]:  # fmt: skip
    """One compare.py run. Returns its markdown table (stdout) and its raw JSON."""
    rdir = WORK / "runs" / stamp
    rdir.mkdir(parents=True, exist_ok=True)
    jpath = rdir / f"{sc.key}.json"
    title = f"{sc.key} (smoke sizes)" if smoke else sc.title
    cmd = [
        sys.executable,
        str(COMPARE),
        "--scenario",
        sc.kind,
        "--repeat",
        str(repeat),
        "--out",
        str(jpath),
        "--title",
        title,
        "--logdir",
        str(WORK / "logs" / stamp),
    ]
    if smoke:
        cmd += ["--settle", "0.2", "--pause", "0.2", "--run-timeout", "60"]
    else:
        cmd += ["--settle", "1", "--pause", "1", "--run-timeout", "240"]
    for name, c in servers:
        cmd += ["--server", f"{name}={c}"]
    cmd += ["--", *(sc.smoke if smoke else sc.args)]
    log(f"{sc.key}: compare.py ... -- {' '.join(sc.smoke if smoke else sc.args)}")
    t0 = time.monotonic()
    rc, stdout, _ = run_group(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE)
    log(f"{sc.key}: done in {time.monotonic() - t0:.0f} s (exit {rc})")
    table = stdout.strip()
    raw = json.loads(jpath.read_text()) if jpath.exists() else None
    return table, raw


def per_msg(sc: Scenario, r: dict[str, Any]) -> float | None:
    """The scenario's headline figure for one run."""
    if sc.metric == "server_cpu_us_per_conn":
        cpu, n = get(r, "results.server_cpu_s_connect_phase"), get(r, "results.connected")
        return cpu * 1e6 / n if cpu is not None and n else None
    v = get(r, f"results.{sc.metric}")
    return float(v) if v is not None else None


def problems(sc: Scenario, raw: dict[str, Any] | None, repeat: int,
             notes: list[str], smoke: bool = False) -> list[str]:  # fmt: skip
    """Everything that is not a clean measurement: not ok, errors, losses, odd packets.
    Broadcast window stalls (no progress for 1 s; a symptom, not an error) go to `notes`."""
    if raw is None:
        return [f"{sc.key}: compare.py wrote no JSON"]
    out: list[str] = []
    for name, runs in raw["runs"].items():
        if len(runs) != repeat:
            out.append(f"{sc.key} {name}: {len(runs)}/{repeat} runs")
        for i, r in enumerate(runs):
            tag = f"{sc.key} {name} run {i + 1}"
            if "error" in r:
                out.append(f"{tag}: {r['error']}")
                continue
            res = r.get("results", {})
            bad = {k: res.get(k) for k in ("connect_failures", "unexpected_packets",
                                           "lost_connections", "lost", "unanswered_at_end")
                   if res.get(k)}  # fmt: skip
            if res.get("errors"):
                bad["errors"] = res["errors"]
            if res.get("window_stalls"):
                notes.append(f"{tag}: window_stalls={res['window_stalls']}")
            if sc.kind == "connect" and res.get("still_open_at_end") not in (None, res.get(
                    "connected")):  # fmt: skip
                bad["still_open_at_end"] = res.get("still_open_at_end")
            if sc.extra.get("pings_per_conn") and not smoke:
                want = sc.extra["pings_per_conn"] * (res.get("connected") or 0)
                if (res.get("eio_pings_answered") or 0) < want:
                    bad["eio_pings_answered"] = res.get("eio_pings_answered")
            if not r.get("ok") or bad:
                out.append(f"{tag}: ok={r.get('ok')} partial={r.get('partial')} {bad}")
    return out


METRIC_LABEL = {
    "server_cpu_us_per_msg": "server CPU µs/msg",
    "server_cpu_us_per_conn": "server CPU µs/connection",
    "server_bytes_per_conn": "server RSS B/connection",
}
RATE_LABEL = {"echo-ack": "acks/s", "broadcast": "deliveries/s", "connect": "connects/s"}
RATE_KEY = {"echo-ack": "results.acks_per_s", "broadcast": "results.deliveries_per_s",
            "connect": "results.connects_per_s"}  # fmt: skip


def summary_table(results: list[tuple[Scenario, dict[str, Any] | None]], names: list[str],
                  other_load: dict[str, float | None]) -> list[str]:  # fmt: skip
    """Headline figure per scenario and server (medians of ok runs), ratios vs ferrosio."""
    others = [n for n in names if n != "ferrosio"]
    hdr = ["scenario", "figure"] + names + [f"{o} / ferrosio" for o in others] + \
          [f"{n} rate" for n in names] + ["machine busy %", "others' load %"]  # fmt: skip
    lines = ["| " + " | ".join(hdr) + " |", "|---|---|" + "---:|" * (len(hdr) - 2)]
    for sc, raw in results:
        runs = raw["runs"] if raw else {}
        ok = {n: [r for r in runs.get(n, []) if r.get("ok")] for n in names}
        fig = {n: median([per_msg(sc, r) for r in ok[n]]) for n in names}
        rate = {n: median([get(r, RATE_KEY[sc.kind]) for r in ok[n]]) for n in names}
        key = "machine_busy_pct_connect_phase" if sc.kind == "connect" else "machine_busy_pct"
        busy = median([get(r, f"results.{key}") for n in names for r in ok[n]])
        base = fig.get("ferrosio")
        ratios = [f"{f / base:.2f}x" if base and (f := fig[o]) else "-" for o in others]
        digits = 0 if sc.metric == "server_bytes_per_conn" else 1
        row = (
            [sc.key, METRIC_LABEL[sc.metric]]
            + [fmt(fig[n], digits) for n in names]
            + ratios
            + [f"{fmt(rate[n], 0)} {RATE_LABEL[sc.kind]}" for n in names]
            + [fmt(busy, 0), fmt(other_load.get(sc.key), 0)]
        )
        lines.append("| " + " | ".join(row) + " |")
    return lines


# --------------------------------------------------------------------- main ----


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; checks, no speed claims")
    ap.add_argument("--repeat", type=int, help="compare.py --repeat (default 3; smoke 1)")
    ap.add_argument(
        "--only", help="comma list of scenario keys (or prefixes) to run; `codec`: codec only"
    )
    ap.add_argument(
        "--servers",
        default=",".join(SERVER_NAMES),
        help="comma list out of ferrosio,psio,node,limit,limit-uws (default: the first three; "
        "ferrosio first; limit, limit-uws: the shared upper-bound servers bench/limit_ws.js and "
        "bench/limit_socketify.py)",
    )
    ap.add_argument("--no-codec", action="store_true", help="skip the codec micro-benchmarks")
    ap.add_argument("--out", help="markdown file (default benches/results/<date>.md; smoke: "
                    ".bench/smoke.md)")  # fmt: skip
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)  # stop compare.py's servers too (run_group)

    if a.list:
        for sc in SCENARIOS:
            print(f"{sc.key:24} {sc.kind:9} {' '.join(sc.args)}")
        return 0
    repeat = a.repeat or (1 if a.smoke else 3)
    names = [n.strip() for n in a.servers.split(",") if n.strip()]
    unknown = set(names) - set(SERVER_NAMES) - set(EXTRA_SERVERS)
    if unknown or not names:
        ap.error(f"unknown servers: {sorted(unknown)}")
    scenarios = SCENARIOS
    if a.only == "codec":
        scenarios = []
    elif a.only:
        keys = [k.strip() for k in a.only.split(",")]
        scenarios = [s for s in SCENARIOS if any(s.key.startswith(k) for k in keys)]
        if not scenarios:
            ap.error(f"no scenario matches {a.only}")
    for tool in ("node",) + (("npm",) if "node" in names else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"e2e: {tool} not found on PATH (sio-load.js needs Node >= 18)")
    if not COMPARE.exists():
        raise SystemExit(f"e2e: {COMPARE} missing (set FERROSIO_SHARED)")

    started = dt.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S") + ("-smoke" if a.smoke else "")
    WORK.mkdir(exist_ok=True)
    ferrosio_version, ferrosio_pkg = check_ferrosio(attempts=1 if a.smoke else 4)
    fp_start = fingerprint(ferrosio_pkg)
    psio_py = setup_psio()
    node_mods = setup_node()
    busy_before = machine_busy()
    others_busy = busy_processes()

    env = node_env(node_mods)
    cmds = server_commands(psio_py, setup_socketify() if "limit-uws" in names else "python")
    servers = [(n, cmds[n]) for n in names]

    doc = [f"# ferrosio benchmarks{' (smoke: not a measurement)' if a.smoke else ''}", "",
           f"{started:%Y-%m-%d %H:%M} · `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`",
           ""]  # fmt: skip
    doc += machine_info(psio_py, node_mods, ferrosio_version)
    doc.append(
        f"- machine before the run: {fmt(busy_before, 0)}% of all cores busy over 1 s; "
        f"other processes over 10% of a core: {', '.join(others_busy) or 'none'}"
    )
    doc.append("")
    all_ok = True
    if not a.no_codec:
        codec_lines, codec_ok = run_codec(a.smoke, stamp)
        doc += [*codec_lines, ""]
        all_ok &= codec_ok

    results: list[tuple[Scenario, dict[str, Any] | None]] = []
    tables: list[str] = []
    issues: list[str] = []
    notes: list[str] = []
    other_load: dict[str, float | None] = {}
    for sc in scenarios:
        for attempt in (1, 2):
            fp0 = fingerprint(ferrosio_pkg)
            meter = OtherLoad()
            sc_repeat = sc.repeat if sc.repeat and not a.smoke and not a.repeat else repeat
            table, raw = run_scenario(sc, servers, a.smoke, sc_repeat, stamp, env)
            if fingerprint(ferrosio_pkg) == fp0:
                break
            # ferrosio was rebuilt or edited under the run: its runs may mix two builds (or
            # a half-written one). Wait for it to settle and measure the scenario again, once.
            notes.append(f"{sc.key}: ferrosio changed during the scenario (attempt {attempt})")
            log(f"{sc.key}: ferrosio changed during the run; waiting for it to settle")
            if attempt == 2 or not wait_stable(ferrosio_pkg):
                break
        if fp0 != fp_start:
            notes.append(f"{sc.key}: measured a different ferrosio build than the first scenario")
        other_load[sc.key] = meter.pct()
        results.append((sc, raw))
        tables.append(table)
        issues += problems(sc, raw, sc_repeat, notes, a.smoke)
        if not table.strip().startswith("###"):
            issues.append(f"{sc.key}: compare.py printed no table")

    busy_after = busy_processes()
    e2e_doc = [
        "## End to end: summary",
        "",
        "Headline figure = server CPU time (user+system, all threads and child processes) per "
        "message counted by the load generator (acks, or deliveries for broadcast), per "
        "connection for the connect scenario, and RSS growth per idle connection; medians of "
        f"the ok runs, {repeat} interleaved run(s) per server in one compare.py run. "
        "`x / ferrosio` > 1 means ferrosio spends less. The rates are shared-machine figures "
        "(server and load generator on the same 2 cores): see benches/README.md. "
        "`machine busy %`: median over the runs, from sio-load (100 = all cores busy); "
        "`others' load %`: CPU used by processes that are not this benchmark's during the "
        "scenario, in % of the whole machine (another job sharing the box; 0 on a quiet one).",
        "",
        *summary_table(results, names, other_load),
        "",
        "## End to end: compare.py tables",
        "",
        "Ratio columns here are compare.py's: the rate against the first server (ferrosio).",
        "",
    ]
    for t in tables:
        e2e_doc += [t, ""]
    if scenarios:
        doc += e2e_doc
    doc += ["## Problems", ""]
    doc += [f"- {i}" for i in issues] or ["none: every run ok, no errors, losses or unexpected "
                                          "packets"]  # fmt: skip
    doc += [f"- note: {n}" for n in notes]
    doc += [
        "",
        f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; other "
        f"processes over 10% of a core: {', '.join(busy_after) or 'none'}. "
        f"Raw JSON: `.bench/runs/{stamp}/`, server logs: `.bench/logs/{stamp}/`. "
        f"Total {(dt.datetime.now() - started).total_seconds() / 60:.1f} min.",
    ]
    all_ok &= not issues

    text = "\n".join(doc) + "\n"
    if a.out:
        path = Path(a.out)
    elif a.smoke:
        path = WORK / "smoke.md"
    else:
        path = BENCHES / "results" / f"{started:%Y-%m-%d}.md"
        if path.exists():
            path = path.with_name(f"{started:%Y-%m-%d-%H%M}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    log(f"wrote {path}")
    if a.smoke:
        if not all_ok:
            log("SMOKE FAILED: " + ("; ".join(issues) or "codec tests failed"))
            return 1
        log("smoke ok: every run ok, every table produced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
