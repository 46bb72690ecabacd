#!/usr/bin/env python3
"""In-process client against loopback: what a handler test costs each way.

    python benches/inprocess_calls.py [--calls 1000] [--tests 100] [--repeat 3]

One app (an ``echo`` handler) in this process. Two figures per transport, each the median of
``--repeat`` runs, in alternation (in-process, loopback, in-process, ...):

- **calls**: one connected client awaits ``client.call("echo", i)`` ``--calls`` times in a
  row (one in flight): wall time per round trip;
- **tests**: ``--tests`` times what a handler test does from scratch: start the server (no
  listener in-process; a free port of 127.0.0.1 otherwise), connect a client, one call,
  disconnect, shut the server down: wall time per test.

The loopback client is the same ``AsyncClient`` over a real WebSocket to the app's listener.
A shared-machine figure: compare the two columns of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import ferrosio
from ferrosio.testing import serve, serve_in_process


def make_app() -> ferrosio.AsyncServer:
    sio = ferrosio.AsyncServer()

    @sio.event
    def echo(sid: str, data: object) -> object:
        return data

    return sio


async def calls(in_process: bool, n: int) -> float:
    sio = make_app()
    if in_process:
        async with serve_in_process(sio):
            return await _calls(sio, n)
    async with serve(sio) as running:
        return await _calls(running.url, n)


async def _calls(target: object, n: int) -> float:
    client = ferrosio.AsyncClient(reconnection=False)
    await client.connect(target, transports=["websocket"])  # type: ignore[arg-type]
    for i in range(50):  # warm-up
        await client.call("echo", i)
    t0 = time.perf_counter()
    for i in range(n):
        assert await client.call("echo", i) == i
    elapsed = time.perf_counter() - t0
    await client.disconnect()
    return elapsed / n


async def tests(in_process: bool, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        sio = make_app()
        client = ferrosio.AsyncClient(reconnection=False)
        if in_process:
            async with serve_in_process(sio):
                await client.connect(sio)
                assert await client.call("echo", i) == i
                await client.disconnect()
        else:
            async with serve(sio) as running:
                await client.connect(running.url, transports=["websocket"])
                assert await client.call("echo", i) == i
                await client.disconnect()
    return (time.perf_counter() - t0) / n


async def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--tests", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    runs: dict[str, list[float]] = {}
    measures: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("calls in-process", lambda: calls(True, a.calls)),
        ("calls loopback", lambda: calls(False, a.calls)),
        ("tests in-process", lambda: tests(True, a.tests)),
        ("tests loopback", lambda: tests(False, a.tests)),
    ]
    for _ in range(a.repeat):
        for name, run in measures:
            runs.setdefault(name, []).append(await run())
    print(f"| measure ({a.calls} calls, {a.tests} tests, median of {a.repeat}) | µs each |")
    print("|---|---:|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(values) * 1e6:,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
