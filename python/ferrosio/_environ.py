"""The environ of an Engine.IO session, kept only while someone uses it.

An environ dict (with its strings) is most of what an idle connection costs on the Python
side, and few applications look at it after the connect handler. So between uses the server
keeps the engine's handshake record (the request, already held by the engine) and builds the
dict again when asked. What python-socketio promises still holds: while anyone holds the dict
(an application that stored it), ``get_environ`` returns that same object; a dict that was
changed (``environ["user"] = ...``) is kept for good, so the change is never lost.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from ferrosio._ferrosio import Handshake

#: Builds the environ of a handshake.
EnvironBuilder = Callable[[Handshake], dict[str, Any]]


class Environ(dict[str, Any]):
    """An environ dict that keeps itself once changed (see the module docstring)."""

    __slots__ = ("__weakref__", "_slot")

    def __init__(self, items: Mapping[str, Any], slot: EnvironSlot) -> None:
        super().__init__(items)
        self._slot: EnvironSlot | None = slot

    def _keep(self) -> None:
        slot = self._slot
        if slot is not None:
            slot.keep(self)

    def __setitem__(self, key: str, value: Any) -> None:
        self._keep()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._keep()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Environ:  # type: ignore[override,misc]
        self._keep()
        super().update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._keep()
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._keep()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._keep()
        return super().popitem()

    def clear(self) -> None:
        self._keep()
        super().clear()

    def update(self, *args: Any, **kw: Any) -> None:
        self._keep()
        super().update(*args, **kw)


class _Follow(weakref.ref[Environ]):
    """A weak reference to an environ that forgets itself in its slot once the environ is
    gone (so a dead one does not stay behind)."""

    __slots__ = ("slot",)

    def __new__(cls, env: Environ, slot: EnvironSlot) -> _Follow:
        return super().__new__(cls, env, _gone)

    def __init__(self, env: Environ, slot: EnvironSlot) -> None:
        self.slot: EnvironSlot | None = slot


def _gone(ref: weakref.ref[Environ]) -> None:
    slot = ref.slot if isinstance(ref, _Follow) else None
    if slot is not None and slot._weak is ref:
        slot._weak = None


# The references to an environ while EnvironSlot.release looks at it, once the slot let go:
# its local name and getrefcount's argument. One more means someone else holds it.
_OWN_REFS = 2


class EnvironSlot:
    """The environ of one Engine.IO session, shared by its sockets (``refs`` of them)."""

    __slots__ = ("_handshake", "_strong", "_weak", "refs")

    def __init__(self, handshake: Handshake) -> None:
        self._handshake = handshake
        self._strong: Environ | None = None
        self._weak: _Follow | None = None
        self.refs = 0

    def get(self, build: EnvironBuilder) -> Environ:
        """The environ: the one in use if any, else built again from the handshake by
        ``build``. Held until :meth:`release`."""
        env = self._strong
        if env is None:
            env = self._weak() if self._weak is not None else None
            if env is None:
                env = Environ(build(self._handshake), self)
            self._strong, self._weak = env, None
        return env

    def keep(self, env: Environ) -> None:
        """``env`` was changed: held for good."""
        self._strong, self._weak = env, None
        env._slot = None

    def release(self) -> None:
        """Done with the environ for now: dropped unless changed; while someone else holds
        it, followed (weakly) so that they and ``get_environ`` keep sharing one object. Called
        again later, it lets go of a weak reference nobody needs any more."""
        env = self._strong
        if env is None:
            env = self._weak() if self._weak is not None else None
            if env is None:
                self._weak = None
                return
        elif env._slot is None:
            return  # changed: kept
        self._strong = None
        if sys.getrefcount(env) <= _OWN_REFS:
            self._weak = None
        elif self._weak is None or self._weak() is not env:
            self._weak = _Follow(env, self)

    def close(self) -> None:
        """The session ended: nothing is kept."""
        env = self._strong
        if env is not None:
            env._slot = None
        if self._weak is not None:
            self._weak.slot = None
        self._strong = self._weak = None
