"""Acknowledgements from many clients: one broadcast, one ack id, a list of answers.

Node's ``io.to(room).timeout(ms).emit(ev, (err, responses) => ...)``: the packet goes to every
recipient under the same ack id; the engine tells how many clients it reached (a
``SOCKETIO_BROADCAST_REACH`` record); the answers are collected in arrival order until that many
came (success) or the deadline passed (:class:`ferrosio.exceptions.TimeoutError` naming how
many of how many answered, with the answers so far).

Bounds: an entry lives until it completes or its deadline (a timeout is required), so pending
entries are bounded by the broadcast rate times the timeout; an entry keeps at most one answer
per socket (a second answer from the same sid is ignored) and never more answers than clients
reached. Answers are matched by (sid, ack id); a client that was not a recipient cannot be told
apart here (the engine does not report the recipients, only their number), as long as it
guesses a pending id.

In a cluster (:mod:`ferrosio._cluster_requests`) the broadcast also goes to the other nodes,
each of which reports how many of its clients it reached, then relays their answers: an entry
then also waits for every other node's count (``servers_missing``), and this node relays the
answers of its clients to another node's broadcast through an entry with a ``relay``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ferrosio import exceptions
from ferrosio._handlers import ack_result

#: ``callback(error, responses)``: error None on success, else a TimeoutError.
Completion = Callable[[BaseException | None, list[Any]], None]


class Relay(Protocol):
    """Where the answers to another node's broadcast go (to that node)."""

    def count(self, clients: int) -> None: ...
    def ack(self, args: Sequence[Any]) -> None: ...


class _Pending:
    __slots__ = (
        "answered",
        "callback",
        "expected",
        "nsp",
        "relay",
        "remote_expected",
        "responses",
        "servers_missing",
        "timeout",
        "timer",
    )

    def __init__(self, nsp: str, callback: Completion, timeout: float) -> None:
        self.nsp = nsp
        self.callback = callback
        self.timeout = timeout
        self.expected: int | None = None  # until the engine says how many it reached
        self.responses: list[Any] = []
        self.answered: set[str] = set()
        self.timer: asyncio.TimerHandle | None = None
        # Cluster: other nodes yet to report their count (None: how many is not known yet),
        # and the sum of the counts reported.
        self.servers_missing: int | None = 0
        self.remote_expected = 0
        self.relay: Relay | None = None


class BroadcastAcks:
    """The pending multi-client acks of a server, by ack id."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def register(
        self,
        loop: asyncio.AbstractEventLoop,
        ack_id: int,
        nsp: str,
        timeout: float,
        callback: Completion,
        *,
        clustered: bool = False,
        relay: Relay | None = None,
    ) -> None:
        """Waits for the answers to broadcast ``ack_id``, for ``timeout`` seconds at most;
        ``clustered``: also for the other nodes' (see :meth:`expect_servers`); ``relay``:
        the count and each answer go to it as well."""
        entry = _Pending(nsp, callback, timeout)
        entry.timer = loop.call_later(timeout, self._expire, ack_id)
        if clustered:
            entry.servers_missing = None
        entry.relay = relay
        self._pending[ack_id] = entry

    def expect_servers(self, ack_id: int, servers: int) -> None:
        """How many other nodes received the broadcast (each will report a count)."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return
        # Counts that came first made it negative.
        entry.servers_missing = servers + (entry.servers_missing or 0)
        self._check(ack_id, entry)

    def on_remote_count(self, ack_id: int, clients: int) -> None:
        """Another node's count of the clients it reached."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return
        entry.servers_missing = (entry.servers_missing or 0) - 1
        entry.remote_expected += max(clients, 0)
        self._check(ack_id, entry)

    def on_remote_ack(self, ack_id: int, value: Any) -> None:
        """An answer of a client of another node."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return
        entry.responses.append(value)
        self._check(ack_id, entry)

    def on_reach(self, ack_id: int, clients: int) -> None:
        """The engine's count of the clients the broadcast reached."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return
        entry.expected = clients
        if entry.relay is not None:
            entry.relay.count(clients)
        if entry.servers_missing == 0 and not entry.remote_expected:
            del entry.responses[clients:]  # (answers before the count: never more than it)
        self._check(ack_id, entry)

    def on_ack(self, sid: str, ack_id: int, args: Sequence[Any]) -> bool:
        """An ack from ``sid``; False if ``ack_id`` is not a pending broadcast."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return False
        if sid in entry.answered:
            return True
        if entry.expected is not None and len(entry.answered) >= entry.expected:
            return True
        entry.answered.add(sid)
        entry.responses.append(ack_result(args))
        if entry.relay is not None:
            entry.relay.ack(args)
        self._check(ack_id, entry)
        return True

    def _check(self, ack_id: int, entry: _Pending) -> None:
        if (
            entry.expected is not None
            and entry.servers_missing is not None
            and entry.servers_missing <= 0
            and len(entry.responses) >= entry.expected + entry.remote_expected
        ):
            del self._pending[ack_id]
            if entry.timer is not None:
                entry.timer.cancel()
            entry.callback(None, entry.responses)

    def _expire(self, ack_id: int) -> None:
        entry = self._pending.pop(ack_id, None)
        if entry is None:
            return
        expected = "?" if entry.expected is None else entry.expected + entry.remote_expected
        detail = ""
        if entry.servers_missing is None:
            detail = "; the other servers could not be counted (redis unreachable?)"
        elif entry.servers_missing > 0:
            detail = f"; {entry.servers_missing} other servers did not say how many they reached"
        err = exceptions.TimeoutError(
            f"{len(entry.responses)} of {expected} clients acknowledged within {entry.timeout} s"
            + detail
        )
        entry.callback(err, entry.responses)

    def fail_all(self, err: BaseException) -> None:
        """Ends every pending entry with ``err`` (the server stopped)."""
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            entry.callback(err, entry.responses)
