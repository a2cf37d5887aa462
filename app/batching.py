"""Coalescing concurrent reads: what a burst of joins to one room asks at once is asked once.

- `SharedReads`: reads of the same key share one read (the "single flight" pattern).
- `BatchedLookup`: lookups of different keys go out as one call (the DataLoader pattern).

Both start a read only after every caller that shares it has asked, so each caller gets what a
read of its own, made then, would have given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SharedReads(Generic[Value]):
    """Concurrent reads of one key share a single read (the "single flight" pattern, limited to
    reads begun after every sharer asked).

    A caller joins the next read of its key. That read starts on the next loop turn, or, while
    a read of the key is under way, when that one ends: at most one read per key is in flight,
    so a burst of callers (every Bearer request's epoch check under load) costs one read per
    round trip, not one per loop turn.

    Arguments:
        read: the read of one key (any hashable value: a tuple keeps its parts apart); its
            exception reaches every sharer.
    """

    def __init__(self, read: Callable[[Any], Awaitable[Value]]) -> None:
        self._read = read
        self._next: dict[Hashable, asyncio.Future[Value]] = {}  # the reads callers join, not begun
        self._in_flight: set[Hashable] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, key: Hashable) -> Value:
        future = self._next.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._next[key] = loop.create_future()
            if key not in self._in_flight:
                loop.call_soon(self._start, key)
        return await asyncio.shield(future)

    def _start(self, key: Hashable) -> None:
        future = self._next.pop(key)  # later callers join the read after this one
        self._in_flight.add(key)
        task = _settle_in_task(future, self._read(key), self._tasks)
        task.add_done_callback(lambda ended: self._ended(key, ended))

    def _ended(self, key: Hashable, read: asyncio.Task[None]) -> None:
        self._in_flight.discard(key)
        if key not in self._next:
            return
        if read.cancelled():  # the worker is shutting down: no read starts for its waiters
            self._next.pop(key).cancel()
            return
        self._start(key)  # callers asked while it was under way: their read starts now


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
) -> asyncio.Task[None]:
    """Run `work` in a task (kept in `tasks` until done) and give its outcome to `future`;
    returns the task."""

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
    return task
