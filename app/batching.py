"""Coalescing concurrent reads: what a burst of joins to one room asks at once is asked once.

- `SharedReads`: reads of the same key share one read (the "single flight" pattern).
- `BatchedLookup`: lookups of different keys go out as one call (the DataLoader pattern).

Both start their read on the next loop turn, after every caller that shares it has asked, so
each caller gets what a read of its own, made then, would have given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SharedReads(Generic[Value]):
    """Concurrent reads of one key share a single read that starts on the next loop turn
    (the "single flight" pattern, limited to reads begun after every sharer asked).

    Arguments:
        read: the read of one key; its exception reaches every sharer.
    """

    def __init__(self, read: Callable[[str], Awaitable[Value]]) -> None:
        self._read = read
        self._pending: dict[str, asyncio.Future[Value]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, key: str) -> Value:
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[key] = loop.create_future()
            loop.call_soon(self._start, key)
        return await asyncio.shield(future)

    def _start(self, key: str) -> None:
        future = self._pending.pop(key)  # later callers start a read of their own
        _settle_in_task(future, self._read(key), self._tasks)


class BatchedLookup(Generic[Key, Value]):
    """Lookups asked during one loop turn go out as one `fetch(keys)`.

    Arguments:
        fetch: returns the values found for some of `keys`; missing keys get `default`.
        default: the value of a key `fetch` did not return.
    """

    def __init__(
        self, fetch: Callable[[list[Key]], Awaitable[dict[Key, Value]]], default: Value
    ) -> None:
        self._fetch = fetch
        self._default = default
        self._batch: tuple[set[Key], asyncio.Future[dict[Key, Value]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: Key) -> Value:
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = (set(), loop.create_future())
            loop.call_soon(self._start)
        keys, future = self._batch
        keys.add(key)
        found = await asyncio.shield(future)
        return found.get(key, self._default)

    def _start(self) -> None:
        assert self._batch is not None
        keys, future = self._batch
        self._batch = None  # later lookups form the next batch
        _settle_in_task(future, self._fetch(sorted(keys, key=repr)), self._tasks)


Result = TypeVar("Result")


def _settle_in_task(
    future: asyncio.Future[Result],
    work: Awaitable[Result],
    tasks: set[asyncio.Task[None]],
) -> None:
    """Run `work` in a task (kept in `tasks` until done) and give its outcome to `future`."""

    async def settle() -> None:
        try:
            value = await work
        except BaseException as error:
            if not future.done():
                future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
        else:
            if not future.done():
                future.set_result(value)

    task = asyncio.ensure_future(settle())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
