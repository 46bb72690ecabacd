"""Broadcast to 1,000 clients spread over two nodes through Redis (issue 12's benchmark).

For each kind of server (ferrosio, Node + ``@socket.io/redis-adapter``, python-socketio +
``AsyncRedisManager``): one redis-server, two nodes on it, ``benches/cluster/load.mjs``
connecting the receivers half to each node and one sender to the first, broadcasting at a
fixed rate (``--rate 0``: closed loop, as ``../shared/bench/sio-load.js``'s broadcast scenario:
at most ``--inflight`` broadcasts' deliveries outstanding); every broadcast reaches every
receiver (half on the sender's node, half through Redis). Reported: the two servers' CPU per
delivery (summed over both nodes; Redis's own CPU apart), delivery latency p50/p99, and
deliveries lost. Kinds run interleaved, ``--repeat``
times; the table gives medians.

    .venv/bin/python benches/cluster_broadcast.py [--psio-python /work/bench-psio-redis/bin/python]
        [--conns 1000] [--rate 20 | --rate 0 --inflight 8] [--duration 10] [--repeat 3]
        [--kinds ferrosio,node,psio]

Needs redis-server, node, ``npm install --prefix tests/cluster`` and, for ``psio``, an
interpreter with python-socketio, redis, uvicorn, uvloop, httptools, websockets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benches" / "cluster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def node_command(kind: str, port: int, redis_url: str, psio_python: str) -> list[str]:
    if kind == "ferrosio":
        return [
            sys.executable,
            str(HERE / "ferrosio_app.py"),
            "--port",
            str(port),
            "--redis",
            redis_url,
        ]
    if kind == "node":
        return ["node", str(HERE / "node_app.mjs"), "--port", str(port), "--redis", redis_url]
    return [psio_python, str(HERE / "psio_app.py"), "--port", str(port), "--redis", redis_url]


def run_once(kind: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(logs / f"redis-{kind}.log", "ab") as log:
            redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append(redis)
        wait_port(redis_port, redis, "redis-server")
        ports = [free_port(), free_port()]
        servers = []
        for port in ports:
            with open(logs / f"{kind}-{port}.log", "ab") as log:
                p = subprocess.Popen(
                    node_command(kind, port, redis_url, args.psio_python),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            procs.append(p)
            servers.append(p)
            wait_port(port, p, kind)
        load = subprocess.run(
            [
                "node",
                str(HERE / "load.mjs"),
                "--ports",
                ",".join(map(str, [ports[0], ports[0]] if args.one_node else ports)),
                "--conns",
                str(args.conns),
                "--rate",
                str(args.rate),
                "--inflight",
                str(args.inflight),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--pids",
                ",".join(str(p.pid) for p in [*servers, redis]),
            ],
            capture_output=True,
            timeout=args.duration + args.warmup + 120,
            check=False,
        )
        lines = load.stdout.decode().strip().splitlines()
        if not lines:
            return {"ok": False, "error": load.stderr.decode()[-500:]}
        result: dict[str, Any] = json.loads(lines[-1])
        if result.get("ok"):
            cpu = result["server_cpu_s"]
            result["servers_cpu_us_per_delivery"] = (cpu[0] + cpu[1]) * 1e6 / result["deliveries"]
            result["redis_cpu_us_per_delivery"] = cpu[2] * 1e6 / result["deliveries"]
            result["lost"] = (
                result["expected_deliveries_total"] - result["received_deliveries_total"]
            )
        return result
    finally:
        for p in reversed(procs):
            stop(p)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kinds", default="ferrosio,node,psio")
    parser.add_argument("--psio-python", default="/work/bench-psio-redis/bin/python")
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument(
        "--inflight",
        type=int,
        default=8,
        help="with --rate 0: broadcasts whose deliveries may be outstanding",
    )
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--one-node",
        action="store_true",
        help="every client on the first node (the second idles): the same load without "
        "cross-node deliveries, for comparison",
    )
    parser.add_argument("--out", type=Path, default=None, help="every raw result, as JSON")
    args = parser.parse_args()
    for tool in ("redis-server", "node"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    kinds = args.kinds.split(",")
    logs = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for i in range(args.repeat):
        for kind in kinds:
            r = run_once(kind, args, logs)
            results[kind].append(r)
            print(f"# run {i + 1} {kind}: {json.dumps(r)}", file=sys.stderr, flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    where = "ONE node (the other idle)" if args.one_node else "two nodes"
    pace = (
        f"{args.rate:g} broadcasts/s"
        if args.rate
        else f"closed loop ({args.inflight} broadcasts in flight)"
    )
    print(
        f"\n{args.conns} clients over {where}, one sender, {pace}, "
        f"{args.duration:g} s windows, median of {args.repeat} (logs: {logs})\n"
    )
    print(
        "| server | ok runs | servers' CPU µs / delivery (sum of both nodes) | vs ferrosio "
        "| deliveries/s | servers' CPU % | latency p50 ms | p99 ms | redis CPU µs / delivery "
        "| lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for kind in kinds:
        ok = [r for r in results[kind] if r.get("ok")]
        if not ok:
            print(f"| {kind} | 0/{args.repeat} | - | - | - | - | - | - | - | - |")
            continue
        cpu = statistics.median(r["servers_cpu_us_per_delivery"] for r in ok)
        base = base if base is not None else cpu
        p50 = statistics.median(r["latency_ms"]["p50"] for r in ok)
        p99 = statistics.median(r["latency_ms"]["p99"] for r in ok)
        redis_cpu = statistics.median(r["redis_cpu_us_per_delivery"] for r in ok)
        lost = max(r["lost"] for r in ok)
        rate = statistics.median(r["deliveries_per_s"] for r in ok)
        busy = statistics.median(
            100 * (r["server_cpu_s"][0] + r["server_cpu_s"][1]) / r["window_s"] for r in ok
        )
        print(
            f"| {kind} | {len(ok)}/{args.repeat} | {cpu:.2f} | {cpu / base:.1f}x | {rate:,.0f} | "
            f"{busy:.0f} | {p50:.2f} | "
            f"{p99:.2f} | {redis_cpu:.3f} | {lost} |"
        )


if __name__ == "__main__":
    main()
