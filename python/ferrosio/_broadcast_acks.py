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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ferrosio import exceptions
from ferrosio._handlers import ack_result

#: ``callback(error, responses)``: error None on success, else a TimeoutError.
Completion = Callable[[BaseException | None, list[Any]], None]


class _Pending:
    __slots__ = ("answered", "callback", "expected", "nsp", "responses", "timeout", "timer")

    def __init__(self, nsp: str, callback: Completion, timeout: float) -> None:
        self.nsp = nsp
        self.callback = callback
        self.timeout = timeout
        self.expected: int | None = None  # until the engine says how many it reached
        self.responses: list[Any] = []
        self.answered: set[str] = set()
        self.timer: asyncio.TimerHandle | None = None


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
    ) -> None:
        """Waits for the answers to broadcast ``ack_id``, for ``timeout`` seconds at most."""
        entry = _Pending(nsp, callback, timeout)
        entry.timer = loop.call_later(timeout, self._expire, ack_id)
        self._pending[ack_id] = entry

    def on_reach(self, ack_id: int, clients: int) -> None:
        """The engine's count of the clients the broadcast reached."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return
        entry.expected = clients
        del entry.responses[clients:]  # (answers before the count: never more than it)
        self._check(ack_id, entry)

    def on_ack(self, sid: str, ack_id: int, args: Sequence[Any]) -> bool:
        """An ack from ``sid``; False if ``ack_id`` is not a pending broadcast."""
        entry = self._pending.get(ack_id)
        if entry is None:
            return False
        if sid in entry.answered:
            return True
        if entry.expected is not None and len(entry.responses) >= entry.expected:
            return True
        entry.answered.add(sid)
        entry.responses.append(ack_result(args))
        self._check(ack_id, entry)
        return True

    def _check(self, ack_id: int, entry: _Pending) -> None:
        if entry.expected is not None and len(entry.responses) >= entry.expected:
            del self._pending[ack_id]
            if entry.timer is not None:
                entry.timer.cancel()
            entry.callback(None, entry.responses)

    def _expire(self, ack_id: int) -> None:
        entry = self._pending.pop(ack_id, None)
        if entry is None:
            return
        expected = "?" if entry.expected is None else entry.expected
        err = exceptions.TimeoutError(
            f"{len(entry.responses)} of {expected} clients acknowledged within {entry.timeout} s"
        )
        entry.callback(err, entry.responses)

    def fail_all(self, err: BaseException) -> None:
        """Ends every pending entry with ``err`` (the server stopped)."""
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            entry.callback(err, entry.responses)
