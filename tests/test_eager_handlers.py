"""Async handlers run their first step at once and get a task only if they really wait.

`step_eagerly` must behave exactly like awaiting the coroutine in a task: results, values sent
in, exceptions and cancellation all reach the coroutine or its caller. The server-level tests
(test_server_api.py, the contract tests) cover handlers that wait (`ask`, `sio.call`) end to end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ferrosio._handlers import step_eagerly


async def test_a_coroutine_that_never_waits_finishes_in_the_first_step() -> None:
    ran: list[str] = []

    async def handler(x: int) -> int:
        ran.append("body")
        return x * 2

    finished, result = step_eagerly(handler(21))
    assert (finished, result) == (True, 42)
    assert ran == ["body"]


async def test_a_coroutine_that_waits_continues_in_a_task_with_the_awaited_values() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    steps: list[Any] = []

    async def handler() -> str:
        steps.append("first")
        got = await fut
        steps.append(got)
        await asyncio.sleep(0)  # a bare yield to the loop
        return got.upper()

    finished, rest = step_eagerly(handler())
    assert not finished
    assert steps == ["first"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    fut.set_result("later")
    assert await asyncio.wait_for(task, 1) == "LATER"
    assert steps == ["first", "later"]


async def test_exceptions_reach_the_caller_in_either_step() -> None:
    async def fails_at_once() -> None:
        raise ValueError("first step")

    with pytest.raises(ValueError, match="first step"):
        step_eagerly(fails_at_once())

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("second step")

    finished, rest = step_eagerly(fails_later())
    assert not finished
    with pytest.raises(KeyError, match="second step"):
        await rest


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    cleaned: list[str] = []

    async def handler() -> None:
        try:
            await never
        finally:
            cleaned.append("finally")

    finished, rest = step_eagerly(handler())
    assert not finished
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


async def test_a_caught_exception_lets_the_coroutine_go_on() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    async def handler() -> str:
        try:
            await fut
        except RuntimeError:
            return "recovered"
        return "not reached"

    finished, rest = step_eagerly(handler())
    assert not finished
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    fut.set_exception(RuntimeError("boom"))
    assert await asyncio.wait_for(task, 1) == "recovered"


async def test_a_cancellation_in_the_first_step_ends_in_the_task_not_in_the_caller() -> None:
    loop = asyncio.get_running_loop()
    cancelled: asyncio.Future[None] = loop.create_future()
    cancelled.cancel()

    async def handler() -> None:
        await cancelled  # raises CancelledError at once

    finished, rest = step_eagerly(handler())  # must not raise here (the dispatch loop)
    assert not finished
    task = asyncio.ensure_future(rest)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
