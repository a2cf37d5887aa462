"""Running Hypercorn workers, with a shutdown that websockets can see.

Hypercorn's own multi-worker runner (`hypercorn.run.run`) tells a worker to stop through a
private event and then waits up to `graceful_timeout` for open connections: a websocket only
learns of it when its task is cancelled, and its client sees 1006 (abnormal closure). This
runner keeps Hypercorn's worker loop (`worker_serve`, shared sockets, uvloop) but passes its own
shutdown trigger, which first runs the app's drain hooks (every websocket gets 1001, "going
away") and then lets Hypercorn finish the graceful shutdown. It also restarts a worker that dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event as EventType

from hypercorn.config import Config, Sockets

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = 1.0


def run_workers(config: Config) -> int:
    """Serve `config.application_path` with `config.workers` processes until SIGTERM or SIGINT.

    Returns the exit code: 0 after a clean shutdown.
    """
    sockets = config.create_sockets()
    context = get_context("spawn")
    stop = context.Event()
    processes = []

    def start_worker() -> None:
        process = context.Process(target=_worker_main, args=(config, sockets, stop))
        process.start()
        processes.append(process)

    def request_stop(*_args: object) -> None:
        stop.set()

    # Workers are started with SIGINT ignored (inherited), so Ctrl-C reaches only this process.
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _ in range(config.workers):
            start_worker()
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    while not stop.is_set():
        wait([process.sentinel for process in processes], timeout=0.5)
        for process in [p for p in processes if not p.is_alive()]:
            if stop.is_set():
                break
            processes.remove(process)
            log.error("worker %s exited with %s; starting another", process.pid, process.exitcode)
            time.sleep(RESTART_BACKOFF_SECONDS)
            start_worker()

    exit_code = 0
    for process in processes:
        process.join(config.graceful_timeout + 10)
        if process.is_alive():
            log.error("worker %s did not stop in time; terminating it", process.pid)
            process.terminate()
            process.join()
            exit_code = 1
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.close()
    return exit_code


def limit_websocket_compression() -> None:
    """Negotiate permessage-deflate without context takeover (RFC 7692 §7.1.1).

    Hypercorn accepts permessage-deflate with context takeover, which keeps a zlib compressor and
    decompressor (about 100 KiB resident, measured by bench/idle_connections.py) alive for each
    connection's whole life. Without context takeover they exist only while a message is being
    compressed: frames of this service are small JSON, so the compression lost is small.
    """
    from functools import partial

    from hypercorn.protocol import ws_stream
    from wsproto.extensions import PerMessageDeflate

    ws_stream.PerMessageDeflate = partial(  # type: ignore[attr-defined]
        PerMessageDeflate, server_no_context_takeover=True, client_no_context_takeover=True
    )


def _worker_main(config: Config, sockets: Sockets, stop: EventType) -> None:
    import uvloop
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import load_application

    limit_websocket_compression()
    wrapped = load_application(config.application_path, config.wsgi_max_body_size)
    quart_app = wrapped.app
    supervisor = os.getppid()

    async def shutdown_trigger() -> None:
        terminated = asyncio.Event()
        # A SIGTERM sent to this worker alone (e.g. to its process group) also stops it.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
        # So does the supervisor's death (SIGKILL): a worker never outlives it.
        while not (stop.is_set() or terminated.is_set() or os.getppid() != supervisor):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        started = time.monotonic()
        for drain in quart_app.extensions.get("drain_hooks", []):
            try:
                await drain()
            except Exception:  # noqa: BLE001 (one failing hook must not block the others)
                log.exception("drain hook failed")
        logging.getLogger("app").info(
            "worker shutting down: drained in %.2f s", time.monotonic() - started
        )

    uvloop.run(worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=shutdown_trigger))
