"""The chat demo (examples/chat/server.py) tested the way a user tests their app: with
ferrosio's pytest plugin (``sio``, ``sio_client_factory``; docs/testing.md quotes this file).

The demo keeps its state in module globals, so every test loads a fresh copy of the module:
a fresh server and empty state per test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ferrosio

CHAT = Path(__file__).resolve().parent.parent / "examples" / "chat" / "server.py"


@pytest.fixture
def chat() -> ModuleType:
    """A fresh copy of the chat module (its server, its empty state)."""
    spec = importlib.util.spec_from_file_location("chat_server", CHAT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sio(chat: ModuleType) -> ferrosio.AsyncServer:
    """The app under test, for the plugin's fixtures."""
    server: ferrosio.AsyncServer = chat.sio
    return server


@pytest.fixture
def user(sio_client_factory: Any) -> Any:
    """``await user("alice")``: a client connected with that username."""

    async def connect(name: str) -> Any:
        return await sio_client_factory(auth={"username": name})

    return connect


async def test_a_message_reaches_everyone_in_the_room(user: Any) -> None:
    alice, bob = await user("alice"), await user("bob")
    assert (await alice.call("join", {"room": "lobby"}))["members"] == ["alice"]
    assert (await bob.call("join", {"room": "lobby"}))["members"] == ["alice", "bob"]

    ack = await alice.call("message", {"room": "lobby", "text": " hello "})

    assert ack == {"ok": True, "id": 1}
    for client in (alice, bob):  # the sender gets it too
        msg = await client.received.next("message")
        assert (msg["user"], msg["room"], msg["text"]) == ("alice", "lobby", "hello")


async def test_the_room_hears_who_joins_and_who_leaves(user: Any) -> None:
    alice, bob = await user("alice"), await user("bob")
    await alice.call("join", {"room": "lobby"})
    assert (await alice.received.next("notice"))["user"] == "alice"  # its own join first
    await bob.call("join", {"room": "lobby"})
    assert (await alice.received.next("notice"))["members"] == ["alice", "bob"]

    await bob.disconnect()

    notice = await alice.received.next("notice")
    assert (notice["type"], notice["user"], notice["members"]) == ("leave", "bob", ["alice"])


async def test_usernames_are_required_and_unique(
    sio_client_factory: Any, user: Any, chat: ModuleType
) -> None:
    await user("Alice")
    for auth, why in ((None, "a username is required"), ({"username": "alice"}, "is taken")):
        with pytest.raises(ferrosio.exceptions.ConnectionError):
            await sio_client_factory(auth=auth)
        client = sio_client_factory.clients[-1]
        assert why in str(client.received.received("connect_error")[0])
    assert list(chat.taken) == ["alice"]


async def test_bad_requests_get_an_error_ack_and_nothing_is_sent(user: Any) -> None:
    alice = await user("alice")
    assert await alice.call("message", {"room": "lobby", "text": "hi"}) == {
        "ok": False,
        "error": "join room 'lobby' first",
    }
    assert (await alice.call("join", "lobby"))["ok"] is False
    assert (await alice.call("dance"))["error"] == "unknown event 'dance'"
    alice.received.assert_not_received("message")
