"""The worker supervisor: Hypercorn workers with a shutdown that websockets can see.

Hypercorn's own multi-worker runner (`hypercorn.run.run`) tells a worker to stop through a
private event and then waits up to `graceful_timeout` for open connections: a websocket only
learns of it when its task is cancelled, and its client sees 1006 (abnormal closure). This
runner keeps Hypercorn's worker loop (`worker_serve`, asyncio) but passes its own
shutdown trigger, which first runs the app's drain hooks (every websocket gets 1001, "going
away") and then lets Hypercorn finish the graceful shutdown. It also restarts a worker that dies.

Workers are forked once the supervisor has imported their third-party packages
(`worker_context`): they start in a fraction of the CPU a fresh interpreter needs and share
those pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import importlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.context import ForkContext, SpawnContext
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from hypercorn.config import Config, Sockets

from app.metric_files import MULTIPROCESS_DIRECTORY, prepare_multiprocess_directory, worker_exited

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = 1.0
# A worker still alive this long after `graceful_timeout` past its stop is ended by its
# ShutdownBackstop: Kubernetes' 20 s grace period (deploy/) is above graceful_timeout (8) + 5.
BACKSTOP_MARGIN_SECONDS = 5.0
# The drain hooks (every websocket closed with 1001) get this long together, within
# hypercorn.toml's graceful_timeout (8 s); the hub's own close waits at most 5 s of it.
DRAIN_BOUND_SECONDS = 6.0
# A worker that outlives SIGTERM this long (after the supervisor's own wait) gets SIGKILL.
KILL_AFTER_TERMINATE_SECONDS = 5.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# A thread still running when the workers start is given this long to end before the
# supervisor gives up forking them (`worker_context`).
OTHER_THREADS_GRACE_SECONDS = 1.0
# The third-party packages every worker imports, imported once by the supervisor before it
# forks the workers. A worker then starts in about 0.3 s of CPU instead of 1.2-1.5 s with
# `spawn`, which made each worker import these, and the supervisor's own modules, again.
WORKER_PRELOAD = (
    "aiomysql",
    "aiosqlite",
    "apscheduler.schedulers.asyncio",
    "argon2",
    "cachetools",
    "confusable_homoglyphs.categories",
    "httptools",
    "hypercorn.asyncio.run",
    "itsdangerous",
    "limits.aio.storage",
    "limits.aio.strategies",
    "orjson",
    "prometheus_client",
    "psutil",
    "pydantic",
    "quart",
    "quart_schema",
    "redis.asyncio",
    "regex",
    "sqlalchemy.dialects.mysql",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.orm",
    "uuid6",
    "wsproto",
)


def run_workers(config: Config) -> int:
    """Serve `config.application_path` with `config.workers` processes until SIGTERM or SIGINT.

    Returns the exit code: 0 after a clean shutdown.

    Raises:
        ValueError: `worker_class` is not "asyncio" (this runner has neither trio nor uvloop:
            hypercorn.toml says why).
    """
    if config.worker_class != "asyncio":
        raise ValueError(f"worker_class {config.worker_class!r}: use 'asyncio'")
    worker_sockets = _sockets_per_worker(config)
    # One scrape shows every worker: prometheus-client's multi-process mode (app/metrics.py).
    metrics_directory = os.environ.get(MULTIPROCESS_DIRECTORY)
    owned_directory = None
    if not metrics_directory:
        owned_directory = metrics_directory = tempfile.mkdtemp(prefix="quart-framework-metrics-")
    prepare_multiprocess_directory(Path(metrics_directory))
    context = worker_context()
    stop = context.Event()
    processes = []

    slots: dict[int, int] = {}  # worker pid -> index of its sockets

    def start_worker(index: int) -> None:
        process = context.Process(
            target=_worker_main, args=(config, worker_sockets[index], stop, os.getpid())
        )
        # Blocked across the fork: the child first replaces the handlers it inherits
        # (`request_stop` would stop every worker), then unblocks them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        processes.append(process)
        slots[process.pid or 0] = index

    # The handler only notes the request and wakes the loop below, which sets `stop`: setting
    # it here took its lock, which a second signal arriving inside the handler, or one arriving
    # while the loop held it (`stop.is_set()`), waited for forever (a burst of SIGTERM and
    # SIGINT hung the supervisor; tests/e2e/test_lifecycle.py).
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    stop_requested = False

    def request_stop(*_args: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        with contextlib.suppress(BlockingIOError):  # full: the loop is woken already
            os.write(wake_write, b"\0")

    # Workers are started with SIGINT ignored (inherited), so Ctrl-C reaches only this process.
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for index in range(config.workers):
            start_worker(index)
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    while not stop_requested:
        wait([*(process.sentinel for process in processes), wake_read], timeout=0.5)
        for process in [p for p in processes if not p.is_alive()]:
            if stop_requested:
                break
            processes.remove(process)
            if process.pid is not None:
                worker_exited(process.pid)
            # 0 is a worker that chose to stop (e.g. Hypercorn's max_requests): routine.
            level = logging.INFO if process.exitcode == 0 else logging.ERROR
            log.log(
                level, "worker %s exited with %s; starting another", process.pid, process.exitcode
            )
            time.sleep(RESTART_BACKOFF_SECONDS)
            start_worker(slots.pop(process.pid or 0, 0))  # its sockets, and their queued clients

    stop.set()
    exit_code = 0
    for process in processes:
        process.join(config.graceful_timeout + 10)
        if process.is_alive():
            log.error("worker %s did not stop in time; terminating it", process.pid)
            process.terminate()
            process.join(KILL_AFTER_TERMINATE_SECONDS)
            if process.is_alive():
                log.error("worker %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.join()
            exit_code = 1
    for sockets in {id(sockets): sockets for sockets in worker_sockets}.values():
        for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
            sock.close()
    if owned_directory is not None:
        shutil.rmtree(owned_directory, ignore_errors=True)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # stopping already: nothing to wake
        signal.signal(stop_signal, signal.SIG_IGN)
    os.close(wake_read)
    os.close(wake_write)
    return exit_code


def worker_context() -> ForkContext | SpawnContext:
    """How workers are started: forked from this process once it has imported
    `WORKER_PRELOAD`, or spawned (a fresh interpreter each) where a fork would be unsafe:

    - another thread is still running after `OTHER_THREADS_GRACE_SECONDS`: a forked child
      gets copies of the locks it held;
    - `app.metrics` is imported (nothing the supervisor runs does): its metric values were made
      before `PROMETHEUS_MULTIPROC_DIR` was set, in this process's memory, and every worker
      would count into its own copy of them (app/metric_files.py).
    """
    if "app.metrics" in sys.modules or not _other_threads_ended(OTHER_THREADS_GRACE_SECONDS):
        return get_context("spawn")
    for name in WORKER_PRELOAD:
        importlib.import_module(name)
    # Out of the collector's sight, as the gc module's documentation advises before a fork: a
    # worker's collections then never write to these objects, and their pages stay shared.
    gc.freeze()
    return get_context("fork")


def _other_threads_ended(within: float) -> bool:
    """Whether every other thread has ended, given `within` seconds to (e.g. aiosqlite's, still
    closing after `serve --migrate`'s migration)."""
    deadline = time.monotonic() + within
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0))
    return threading.active_count() == 1


def _sockets_per_worker(config: Config) -> list[Sockets]:
    """The listening sockets of each worker: with several workers and TCP addresses, a set of
    its own per worker, bound with SO_REUSEPORT to the same addresses, so the kernel spreads
    new connections evenly over the workers (by a hash of the client's address and port).

    With one socket shared by every worker, whichever worker woke first took a batch of the
    queued connections: under 1,000 connections opened at once one worker held 648 and the
    other 352, and 268 waited in the accept queue for up to 2.5 s (bench/, raw ASGI app), the
    slowest tail of the whole run. The supervisor keeps every socket open, so a worker that
    dies leaves its queued connections to its replacement. Unix and fd:// addresses (and one
    worker) keep one shared set.
    """
    binds = [*config.bind, *config.insecure_bind]
    if config.workers == 1 or any(bind.startswith(("unix:", "fd://")) for bind in binds):
        shared = config.create_sockets()
        return [shared] * config.workers
    return [config.create_sockets() for _ in range(config.workers)]


async def _report_lingering(config: Config) -> None:
    """Halfway through `graceful_timeout`, log the tasks still holding the shutdown (their
    coroutine and where it waits): what an operator needs to find a stuck connection."""
    await asyncio.sleep(config.graceful_timeout / 2)
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is current:
            continue
        log.warning("shutdown still waiting on task %s: %s", task.get_name(), _awaiting(task))
    # A connection's task awaits Hypercorn's TCPServer, whose coroutine a task does not show.
    import inspect

    for held in gc.get_objects():
        if (
            inspect.iscoroutine(held)
            and held.cr_frame is not None
            and (held.__qualname__ == "TCPServer.run")
        ):
            log.warning("shutdown still waiting on a connection: %s", _awaiting(held))


def _awaiting(task: asyncio.Task[Any] | Any) -> str:
    """Where a task (or coroutine) waits: its chain of awaited coroutines, outermost first."""
    chain: list[str] = []
    awaited: Any = task.get_coro() if isinstance(task, asyncio.Task) else task
    while awaited is not None and len(chain) < 20:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    if awaited is not None or not chain:
        chain.append(repr(awaited))
    return " -> ".join(chain)


def tune_garbage_collector(thresholds: tuple[int, int, int]) -> Callable[[], Awaitable[None]]:
    """A `before_serving` hook (run after the app's own startup hooks) that first moves what
    startup built (modules, models, schemas, pools: ~120,000 objects that live as long as the
    worker) out of the garbage collector's sight (`gc.freeze`): a full collection then takes
    about 1 ms instead of about 115 ms, a stall of every request and websocket of the worker.
    Garbage is collected first, so none is kept for good. Then it sets `GC_THRESHOLDS`
    (`gc.set_threshold`): with Python's defaults, the objects of requests waiting in the
    admission queue reached the oldest generation, whose collections then ran every second or
    so over every connection's objects (bench/, docs/performance.md)."""

    async def tune() -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*thresholds)
        logging.getLogger("app").info(
            "startup objects frozen: %d (full garbage collections skip them); "
            "collector thresholds %s",
            gc.get_freeze_count(),
            thresholds,
        )

    return tune


async def run_drain_hooks(hooks: list[Callable[[], Awaitable[None]]], bound: float) -> None:
    """Run `hooks` one after the other, all of them within `bound` seconds: a hook that fails
    is logged with its traceback, one still running when the bound is reached is logged with
    where it waits, then cancelled (the shutdown goes on without it; issue 32: a drain that
    never ended kept a worker serving, deaf to its stop, until SIGKILL)."""
    deadline = time.monotonic() + bound
    for hook in hooks:
        task = asyncio.ensure_future(hook())
        done, _ = await asyncio.wait({task}, timeout=max(0.1, deadline - time.monotonic()))
        if not done:
            log.error(
                "drain hook %s still running after %.1f s, cancelled: %s",
                getattr(hook, "__qualname__", hook),
                bound,
                _awaiting(task),
            )
            task.cancel()
            continue
        error = task.exception()
        if error is not None:
            log.error("drain hook failed", exc_info=error)


class ShutdownBackstop:
    """Ends a worker whose shutdown overruns: `deadline_seconds` after it was told to stop
    (`stop` set, a SIGTERM reported through `terminated()`, or its supervisor `supervisor` gone),
    a daemon thread writes every thread's stack to stderr (faulthandler) and exits the process
    with status 1.

    Under three test suites at once on 2 cores, a worker was seen to outlive its stop, its
    SIGTERM and its supervisor, idle until SIGKILL (issue 32): whatever holds a shutdown, the
    process still ends, and its stacks say where it was held.
    """

    def __init__(self, deadline_seconds: float, stop: EventType, supervisor: int) -> None:
        self.deadline_seconds = deadline_seconds
        self._stop = stop
        self._supervisor = supervisor
        self._terminated = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._watch, name="shutdown-backstop", daemon=True).start()

    def terminated(self) -> None:
        """Report a SIGTERM (safe to call from a signal handler or the event loop)."""
        self._terminated.set()

    def told_to_stop(self) -> bool:
        """Whether `stop` is set, a SIGTERM was reported, or the supervisor is gone."""
        return self._terminated.is_set() or os.getppid() != self._supervisor or self._stop.is_set()

    def _watch(self) -> None:
        while not self.told_to_stop():
            self._terminated.wait(0.5)
        threading.Event().wait(self.deadline_seconds)
        log.error(
            "worker %s still running %.1f s after it was told to stop; its stacks follow, "
            "then it exits",
            os.getpid(),
            self.deadline_seconds,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)


def _worker_main(config: Config, sockets: Sockets, stop: EventType, supervisor: int) -> None:
    """One worker: the app on Hypercorn's worker loop, or on Uvicorn (`SERVER=uvicorn`,
    app/uvicorn_server.py), until the supervisor (pid `supervisor`) or a SIGTERM stops it, or
    the supervisor dies."""
    # A forked worker inherits the supervisor's handlers, blocked (`start_worker`); its own
    # SIGTERM handler comes with its loop (`shutdown_trigger`), and Ctrl-C is the supervisor's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import load_application

    from app.state import app_state

    backstop = ShutdownBackstop(config.graceful_timeout + BACKSTOP_MARGIN_SECONDS, stop, supervisor)
    backstop.start()
    # Loading `app.asgi` applies the server patches with the app's settings (serve checked the
    # versions before starting the workers).
    wrapped = load_application(config.application_path, config.wsgi_max_body_size)
    quart_app = wrapped.app  # type: ignore[attr-defined]  # hypercorn's ASGIWrapper
    settings = app_state(quart_app).settings
    quart_app.before_serving(tune_garbage_collector(settings.gc_thresholds))
    # The supervisor's pid comes from the supervisor: read here with getppid(), a worker still
    # starting when the supervisor was SIGKILLed took init's pid for it and never stopped.

    async def shutdown_trigger() -> None:
        # A SIGTERM sent to this worker alone (e.g. to its process group) also stops it, and
        # so does the supervisor's death (SIGKILL): a worker never outlives it.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, backstop.terminated)
        while not backstop.told_to_stop():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        started = time.monotonic()
        await run_drain_hooks(list(app_state(quart_app).drain_hooks), DRAIN_BOUND_SECONDS)
        logging.getLogger("app").info(
            "worker shutting down: drained in %.2f s", time.monotonic() - started
        )
        watch = asyncio.get_running_loop().create_task(_report_lingering(config))
        lingering.add(watch)

    lingering: set[asyncio.Task[None]] = set()
    if settings.server == "uvicorn":
        import uvloop

        from app import uvicorn_server

        uvloop.run(
            uvicorn_server.serve(
                quart_app, settings, config, sockets.insecure_sockets, shutdown_trigger
            )
        )
        return
    serving = worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=shutdown_trigger)
    asyncio.run(serving)
