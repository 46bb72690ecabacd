"""Connection state recovery on the server: its options, and the user sessions of lost
sockets kept until they come back.

The engine keeps the rest (sid, private id, rooms, the log of packets with their offsets: see
``rust/ferrosio-core/src/socketio/recovery.rs``) and says which CONNECTs it recovered; this
module keeps what only Python has, the ``save_session`` data, for the sockets the engine says
it keeps, under the same bounds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, NamedTuple

_DEFAULTS: dict[str, Any] = {
    "max_disconnection_duration": 120.0,
    "skip_middlewares": True,
    "max_sessions": 10_000,
    "max_log_size": 16_000_000,
    "max_missed_packets": 10_000,
    "max_missed_size": 4_000_000,
}

# Python keeps a session a little longer than the engine: the engine decides, and a session
# it restores must still be here.
_GRACE = 5.0


class RecoveryOptions(NamedTuple):
    """``AsyncServer(connection_state_recovery=...)`` with every default filled in."""

    max_disconnection_duration: float
    skip_middlewares: bool
    max_sessions: int
    max_log_size: int
    max_missed_packets: int
    max_missed_size: int

    @classmethod
    def parse(cls, value: bool | dict[str, Any] | None) -> RecoveryOptions | None:
        """``None``/``False``: off; ``True``: the defaults; a dict: the defaults it overrides
        (an unknown key raises ``TypeError``, a bad value ``ValueError``)."""
        if value is None or value is False:
            return None
        if value is True:
            options = dict(_DEFAULTS)
        elif isinstance(value, dict):
            unknown = set(value) - set(_DEFAULTS)
            if unknown:
                raise TypeError(
                    f"unknown connection_state_recovery option(s): {', '.join(sorted(unknown))}"
                )
            options = {**_DEFAULTS, **value}
        else:
            raise TypeError("connection_state_recovery must be True, False, None or a dict")
        duration = options["max_disconnection_duration"]
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            raise ValueError("max_disconnection_duration must be a positive number of seconds")
        if not isinstance(options["skip_middlewares"], bool):
            raise ValueError("skip_middlewares must be True or False")
        for name in ("max_sessions", "max_log_size", "max_missed_packets", "max_missed_size"):
            n = options[name]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {n!r}")
        options["max_disconnection_duration"] = float(duration)
        return cls(**options)

    def engine_args(self) -> tuple[int, int, int, int, int]:
        """The engine's ``recovery=`` argument."""
        return (
            max(1, round(self.max_disconnection_duration * 1000)),
            self.max_sessions,
            self.max_log_size,
            self.max_missed_packets,
            self.max_missed_size,
        )


class KeptSessions:
    """The ``save_session`` data of lost sockets, by sid, oldest first: at most
    ``max_sessions``, each for ``max_disconnection_duration`` (forgotten lazily, at the next
    disconnect or recovery)."""

    __slots__ = ("_kept", "_options")

    def __init__(self, options: RecoveryOptions) -> None:
        self._options = options
        self._kept: OrderedDict[str, tuple[str, dict[str, Any], float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, sid: str, nsp: str, session: dict[str, Any] | None) -> None:
        now = time.monotonic()
        self._expire(now)
        if session is None or self._options.max_sessions == 0:
            return  # nothing but the engine's part to keep
        self._kept[sid] = (nsp, session, now)
        while len(self._kept) > self._options.max_sessions:
            self._kept.popitem(last=False)

    def take(self, sid: str, nsp: str) -> dict[str, Any] | None:
        self._expire(time.monotonic())
        entry = self._kept.pop(sid, None)
        if entry is None or entry[0] != nsp:
            return None
        return entry[1]

    def _expire(self, now: float) -> None:
        limit = self._options.max_disconnection_duration + _GRACE
        kept = self._kept
        while kept:
            sid, (_, _, at) = next(iter(kept.items()))
            if now - at <= limit:
                return
            del kept[sid]
