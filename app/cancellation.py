"""Background loops that retry on errors, and cancellation; a worker's own background tasks
(`BackgroundTask`).

A loop that catches `Exception` to retry (the broker's subscription, the hub's heartbeat) must
still end when its task is cancelled. On Python 3.11 a cancellation that races a library's own
time-out can come out as that time-out's `TimeoutError`, or be swallowed by `asyncio.wait_for`
when the awaited result is ready at the same moment (CPython gh-86296, fixed in 3.12): the loop
would retry, and `task.cancel(); await task` at shutdown never return (issue 32: a worker
stayed serving past its stop until SIGKILL). The task's pending cancel requests still count in
`Task.cancelling()`; these read it.
"""

from __future__ import annotations

import asyncio
import contextlib


def stopping() -> bool:
    """Whether the current task has been asked to cancel (`Task.cancelling()` > 0)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_stopping(cause: BaseException | None = None) -> None:
    """Raise `CancelledError` (from `cause`) when the current task has been asked to cancel.

    Raises:
        asyncio.CancelledError: the task was cancelled and something else came out of it.
    """
    if stopping():
        raise asyncio.CancelledError from cause


class BackgroundTask:
    """A task of the worker's own (a probe, a sampler): `start()` starts `run()`, `stop()`
    cancels it and waits for it to end."""

    name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """The task's work, until cancelled."""
        raise NotImplementedError
