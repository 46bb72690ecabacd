"""The load process of :func:`ferrosio.testing.drive_load` (``python -m ferrosio._load SPEC``).

SPEC is JSON: url, event, data, clients, inflight, duration, warmup, namespace. Connects every
client (WebSocket), keeps ``inflight`` calls in flight per client for the warm-up and the
measured window, and prints ``start`` and ``stop`` (one line each, as the window opens and
closes: the parent reads the server's CPU time then), then one JSON line: messages acked in
the window, its length, latency percentiles (µs), errors.

Latencies go into a log-scale histogram (2 % wide buckets between 1 µs and 10 min, so at
most about 1,000 buckets however long the run): memory is bounded by construction.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import Any

from ferrosio.client import AsyncClient

_STEP = math.log(1.02)
_MAX_BUCKET = int(math.log(600e6) / _STEP)


class Histogram:
    """Latencies in µs, in buckets 2 % wide (a bucket reads as its upper bound)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0

    def add(self, us: float) -> None:
        b = min(_MAX_BUCKET, int(math.log(us) / _STEP) + 1) if us > 1 else 0
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1

    def percentile(self, p: float) -> float:
        rank = max(1, math.ceil(p * self.n / 100))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return math.exp(b * _STEP)
        return 0.0

    def summary(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"p50": self.percentile(50), "p90": self.percentile(90),
                "p99": self.percentile(99), "max": self.percentile(100)}  # fmt: skip


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    event, data, nsp = spec["event"], spec.get("data"), spec.get("namespace", "/")
    clients = [AsyncClient(reconnection=False) for _ in range(int(spec["clients"]))]
    connects = [
        c.connect(spec["url"], transports=["websocket"], namespaces=[nsp], wait_timeout=30)
        for c in clients
    ]
    await asyncio.gather(*connects)
    hist = Histogram()
    state = {"measuring": False, "done": False, "messages": 0, "errors": 0}

    async def caller(client: AsyncClient) -> None:
        while not state["done"]:
            t0 = time.perf_counter()
            try:
                await client.call(event, data, namespace=nsp, timeout=30)
            except Exception:
                state["errors"] += 1
                continue
            if state["measuring"]:
                state["messages"] += 1
                hist.add((time.perf_counter() - t0) * 1e6)

    tasks = [asyncio.create_task(caller(c)) for c in clients for _ in range(int(spec["inflight"]))]
    await asyncio.sleep(float(spec["warmup"]))
    print("start", flush=True)
    state["measuring"], t0 = True, time.perf_counter()
    await asyncio.sleep(float(spec["duration"]))
    state["measuring"], window = False, time.perf_counter() - t0
    print("stop", flush=True)
    state["done"] = True
    await asyncio.wait(tasks, timeout=35)
    for c in clients:
        await c.disconnect()
    return {"messages": state["messages"], "window_s": window, "errors": state["errors"],
            "latencies_us": hist.summary()}  # fmt: skip


if __name__ == "__main__":
    try:
        result = asyncio.run(main(json.loads(sys.argv[1])))
    except Exception as e:  # reported to the parent as data, with the exit code
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        sys.exit(1)
    print(json.dumps(result), flush=True)
