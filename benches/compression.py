#!/usr/bin/env python3
"""What permessage-deflate costs the server and saves on the wire, with the official client.

    python benches/compression.py [--repeat 3] [--duration 6] [--payload-bytes 2000]

For each scenario (echo-ack, broadcast) and each setting (``off``: the server does not
negotiate; ``on``: ``per_message_deflate=True`` and the client offers it), interleaved
``--repeat`` times: starts benches/compression_app.py on a free port, runs
benches/compression_load.mjs against it (socket.io-client from tests/node/node_modules), stops
it. Prints a markdown table of medians: messages/s, server CPU µs per message, wire bytes per
message (both directions, TCP payload). Needs node and ``npm install --prefix tests/node``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "benches" / "compression_app.py"
LOAD = REPO / "benches" / "compression_load.mjs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def run_one(scenario: str, deflate: bool, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    cmd = [sys.executable, str(APP), "--port", str(port)]
    if deflate:
        cmd.append("--per-message-deflate")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, server)
        load = [
            "node",
            str(LOAD),
            "--port",
            str(port),
            "--server-pid",
            str(server.pid),
            "--scenario",
            scenario,
            "--duration",
            str(args.duration),
            "--payload-bytes",
            str(args.payload_bytes),
        ]
        if deflate:
            load.append("--deflate")
        env = dict(os.environ, NODE_PATH=str(REPO / "tests" / "node" / "node_modules"))
        out = subprocess.run(
            load,
            capture_output=True,
            text=True,
            timeout=args.duration + 90,
            env=env,
            cwd=REPO / "tests" / "node",
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"no result: {out.stderr[-2000:]}")
        result: dict[str, object] = json.loads(lines[-1])
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=int, default=6)
    p.add_argument("--payload-bytes", type=int, default=2000)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    results: dict[tuple[str, bool], list[dict[str, object]]] = {}
    for _ in range(args.repeat):
        for scenario in ("echo-ack", "broadcast"):
            for deflate in (False, True):
                r = run_one(scenario, deflate, args)
                print(json.dumps(r), file=sys.stderr)
                results.setdefault((scenario, deflate), []).append(r)
    if args.out:
        args.out.write_text(json.dumps({f"{s}/{d}": v for (s, d), v in results.items()}))
    print("| scenario | permessage-deflate | messages/s | server CPU µs/msg | wire bytes/msg |")
    print("|---|---|---:|---:|---:|")
    for (scenario, deflate), runs in results.items():
        ok = [r for r in runs if r.get("ok")]

        def med(key: str, ok: list[dict[str, object]] = ok) -> float:
            return statistics.median(float(r[key]) for r in ok)  # type: ignore[arg-type]

        negotiated = all(r.get("deflate_negotiated") == deflate for r in ok)
        print(
            f"| {scenario} | {'on' if deflate else 'off'}{'' if negotiated else ' (?)'} "
            f"| {med('messages_per_s'):,.0f} | {med('server_cpu_us_per_msg'):.1f} "
            f"| {med('wire_bytes_per_msg'):,.0f} |"
        )


if __name__ == "__main__":
    main()
