"""``ferrosio.run(server, workers=N)``: N worker processes on one port, and their supervisor.

The calling process becomes the supervisor: it forks the workers (before any of them starts
an engine thread or an event loop: forking a process with a running tokio runtime is not
safe), replaces a worker that dies, and on SIGTERM or SIGINT stops them all gracefully.

Each worker is a whole server (engine thread, event loop, the application's handlers) bound
to the port with ``SO_REUSEPORT``; the kernel spreads new connections over them. The sid of a
session names its worker, and a request that reaches another worker has its connection
handed to the owner (see ``rust/ferrosio-core/src/server/handoff.rs``), so clients need no
sticky sessions. Broadcasts reach the clients of every worker through the Redis adapter,
which is why ``workers > 1`` needs ``client_manager=AsyncRedisManager(...)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ferrosio.cluster import AsyncRedisManager
from ferrosio.exceptions import FerrosioError

if TYPE_CHECKING:
    from ferrosio.server import AsyncServer

logger = logging.getLogger("ferrosio.run")

#: The most workers a sid can name (its first base64 character).
MAX_WORKERS = 64
#: A worker that exits sooner than this after its start is restarted only after this pause
#: (a worker that cannot start does not spin the machine) ...
QUICK_EXIT = 1.0
#: ... and after this many such exits in a row, the supervisor gives up.
MAX_QUICK_EXITS = 5
#: Seconds the workers get beyond ``shutdown_timeout`` before they are killed.
STOP_MARGIN = 5.0


def check(server: AsyncServer, workers: int, ssl_certfile: Any) -> None:
    """Refuses what several workers cannot do, before anything starts."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be between 1 and {MAX_WORKERS}, not {workers}")
    if workers == 1:
        return
    if not sys.platform.startswith("linux"):
        raise ValueError("workers > 1 needs Linux (SO_REUSEPORT and SCM_RIGHTS)")
    if not isinstance(server.client_manager, AsyncRedisManager):
        raise ValueError(
            "workers > 1 needs client_manager=ferrosio.AsyncRedisManager(url): each worker has "
            "its own clients, and broadcasts reach the other workers' clients through Redis"
        )
    if ssl_certfile is not None:
        raise ValueError(
            "workers > 1 cannot serve TLS (a TLS connection cannot be handed to another "
            "worker): terminate TLS in a proxy in front of the workers, or use workers=1"
        )
    if server._engine is not None and server._engine.is_running():
        raise FerrosioError("server is already running: workers are forked before it starts")


def _reserve(host: str, port: int) -> socket.socket:
    """Binds (without listening) the workers' address with ``SO_REUSEPORT``: the address is
    checked here, port 0 becomes a real port, and it stays ours while workers are replaced."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def supervise(
    server: AsyncServer,
    workers: int,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    serve: Callable[[int], None],
) -> None:
    """Runs ``workers`` forked processes, each calling ``serve(port)`` (a single-process
    :func:`ferrosio.run`), until SIGTERM or SIGINT; replaces those that die meanwhile.

    :raises FerrosioError: a worker kept exiting right after its start.
    """
    reserved = _reserve(host, port)
    port = reserved.getsockname()[1]
    handoff_dir = tempfile.mkdtemp(prefix="ferrosio-workers-")
    watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker number, start time)
    quick_exits = [0] * workers

    def spawn(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                reserved.close()
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
                server._worker = (index, workers, handoff_dir)
                serve(port)
                code = 0
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        children[pid] = (index, time.monotonic())
        logger.info("worker %d started (pid %d)", index, pid)

    stop_deadline: float | None = None
    failure: str | None = None
    due: dict[int, float] = {}  # worker number -> when to start its replacement

    def stop_all() -> None:
        nonlocal stop_deadline
        stop_deadline = time.monotonic() + shutdown_timeout + STOP_MARGIN
        due.clear()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    try:
        logger.info("%d workers on %s:%d (supervisor pid %d)", workers, host, port, os.getpid())
        for index in range(workers):
            spawn(index)
        while children or due:
            now = time.monotonic()
            wait = min([1.0, *(max(0.0, at - now) for at in due.values())])
            info = signal.sigtimedwait(watched, wait)
            if info is not None and info.si_signo != signal.SIGCHLD and stop_deadline is None:
                logger.info("stopping %d workers", len(children))
                stop_all()
            for pid, status in _reap():
                if pid not in children:
                    continue
                index, started = children.pop(pid)
                if stop_deadline is not None:
                    continue
                quick = time.monotonic() - started < QUICK_EXIT
                quick_exits[index] = quick_exits[index] + 1 if quick else 0
                logger.warning(
                    "worker %d (pid %d) exited (%s)", index, pid, _describe_status(status)
                )
                if quick_exits[index] >= MAX_QUICK_EXITS:
                    failure = f"worker {index} exited {MAX_QUICK_EXITS} times right after starting"
                    logger.error("%s; stopping", failure)
                    stop_all()
                    continue
                # One that died right after its start waits a little: no respawn storm.
                due[index] = time.monotonic() + (QUICK_EXIT if quick else 0.0)
            now = time.monotonic()
            for index in [i for i, at in due.items() if at <= now]:
                del due[index]
                logger.info("starting a new worker %d", index)
                spawn(index)
            if stop_deadline is not None and now > stop_deadline:
                for pid in children:
                    logger.warning("worker pid %d did not stop in time: killed", pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                stop_deadline = now + STOP_MARGIN
    finally:
        for pid in children:  # only after an exception in the supervisor itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        reserved.close()
        shutil.rmtree(handoff_dir, ignore_errors=True)
    logger.info("all workers stopped")
    if failure is not None:
        raise FerrosioError(failure)


def _reap() -> list[tuple[int, int]]:
    """The children that exited, with their wait status."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
