"""Waiting for something to become true, with a deadline (never a guessed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

Value = TypeVar("Value")


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Seconds until `check()` is true (polled every `interval` s); fails after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def poll_for(
    read: Callable[[], Value], until: Callable[[Value], bool], timeout: float = 20
) -> Value:
    """`read()` until `until(value)` holds (every 0.2 s, up to `timeout` s); the last value."""
    found: list[Value] = []

    def check() -> bool:
        found[:] = [read()]
        return until(found[0])

    poll(check, timeout, interval=0.2)
    return found[0]


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10, interval: float = 0.05
) -> None:
    """Await `check()` until it is true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not reached within {timeout} s"
        await asyncio.sleep(interval)


async def suspend_once(value: int = 0) -> int:
    """Suspends its task for one loop turn (a future the loop sets), then returns `value`."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    loop.call_soon(done.set_result, value)
    return await done


def answers(url: str, status: int = 200, **options) -> bool:
    """Whether GET `url` answers `status` now (a connection error is no)."""
    try:
        return httpx.get(url, timeout=5, **options).status_code == status
    except httpx.HTTPError:
        return False
