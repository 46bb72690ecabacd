#!/usr/bin/env python3
"""Where the CPU of one echo-ack goes: the Python loop thread versus the Rust engine thread,
and how many events each wake-up of the loop carries.

Runs ferrosio's reference app in this process with counters around the drain, drives it with
../shared/bench/sio-load.js (echo-ack), and reads per-thread CPU from /proc. Used for the
numbers in docs/design.md.

    python benches/bridge_costs.py [--conns 100] [--inflight 16] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADGEN = ROOT.parent / "shared" / "bench" / "sio-load.js"
sys.path.insert(0, str(ROOT / "examples"))

import reference_app  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread name of this process."""
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = pathlib.Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            stat = pathlib.Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--payload-bytes", type=int, default=32)
    a = p.parse_args()
    sio = reference_app.sio
    drains = [0, 0]  # calls, events
    port = await sio.start("127.0.0.1", 0)
    engine = sio._engine
    assert engine is not None
    real_drain = engine.drain

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(engine, name)

        def drain(self) -> list:
            items = real_drain()
            drains[0] += 1
            drains[1] += len(items)
            return items

    sio._engine = Counting()  # type: ignore[assignment]
    cmd = [
        "node",
        str(LOADGEN),
        "--scenario",
        "echo-ack",
        "--port",
        str(port),
        "--conns",
        str(a.conns),
        "--inflight",
        str(a.inflight),
        "--duration",
        str(a.duration),
        "--warmup",
        "1",
        "--payload-bytes",
        str(a.payload_bytes),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    # measure only the window: skip connect + warm-up
    await asyncio.sleep(1.5)
    cpu0, d0, t0 = thread_cpu(), list(drains), time.monotonic()
    await asyncio.sleep(a.duration - 1)
    cpu1, d1, t1 = thread_cpu(), list(drains), time.monotonic()
    out, _ = await proc.communicate()
    result = json.loads(out.decode().strip().splitlines()[-1])
    await sio.shutdown()
    acks = result["results"]["acks_per_s"] * (t1 - t0)
    events = d1[1] - d0[1]
    print(
        json.dumps(
            {
                "acks_per_s": round(result["results"]["acks_per_s"]),
                "rtt_p50_us": result["results"]["rtt_us"]["p50"],
                "events_per_wakeup": round(events / max(1, d1[0] - d0[0]), 1),
                "python_thread_us_per_msg": round(
                    1e6 * (cpu1.get("python", 0) - cpu0.get("python", 0)) / max(1, acks), 2
                ),
                "engine_thread_us_per_msg": round(
                    1e6 * (cpu1.get("ferrosio-io", 0) - cpu0.get("ferrosio-io", 0)) / max(1, acks),
                    2,
                ),
                "threads": {k: round(cpu1[k] - cpu0.get(k, 0), 2) for k in cpu1},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
