"""The service's own per-request hooks: what each costs a request, in CPU time (issue 30: all of
them together at most 60 us).

The service's app (production settings, MariaDB, Redis, metrics in multi-process mode, the
worker's collector thresholds) is driven in-process through its ASGI interface, one request at
a time on `GET /methods` (a route with every hook and no database, whose noise would hide
microseconds), in blocks of `requests` requests. A hook's cost is the CPU time per request of a
block with everything on less that of the block right after it with only that hook off; each
round pairs every variant so, in a shuffled order, and a figure is the median of its `rounds`
pairs. "all hooks" is everything on less everything off (no ASGI middleware of the service's,
no `before_request` hook of its own). The server's cost is not in these figures:
bench/peers.py measures whole servers.

Run as `python -m bench.hooks ROUNDS REQUESTS` (the peers suite does, in a process of its
own); prints one JSON object: {hook: microseconds}, plus "request, everything on" (the whole
request) and "spread" (the largest of the figures' half interquartile range over the square
root of the rounds: how far a figure may be off).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HOOKS_BEFORE = ("identify_request", "check_csrf")
PATH = "/methods"


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk/4.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


async def _request(app: Any) -> None:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.get_running_loop().create_future()  # the client stays: never returns
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{PATH} answered {message['status']}")

    await app(_scope(), receive, send)


async def measure(rounds: int, requests: int) -> dict[str, float]:
    from app.factory import create_app
    from app.request_hooks import RequestHooks

    app = create_app()
    async with app.test_app():
        for _ in range(500):
            await _request(app)
        gc.collect()
        gc.freeze()
        gc.set_threshold(100000, 50, 100)  # the worker's GC_THRESHOLDS

        full = app.middleware_stack
        layers = [full]
        while hasattr(layers[-1], "app"):
            layers.append(layers[-1].app)
        hooks = next(layer for layer in layers if isinstance(layer, RequestHooks))
        quart_asgi = layers[-1]
        before = copy.copy(app.before_request_funcs[None])
        originals = {
            "write": hooks.access_log.write,
            "observe": hooks.metrics.observe,
            "added_to": hooks.security_headers.added_to,
        }

        def restore() -> None:
            app.before_request_funcs[None] = copy.copy(before)
            app.middleware_stack = full
            hooks.access_log.write = originals["write"]  # type: ignore[method-assign]
            hooks.metrics.observe = originals["observe"]  # type: ignore[method-assign]
            hooks.security_headers.added_to = originals["added_to"]  # type: ignore[method-assign]

        def without(*names: str) -> Callable[[], None]:
            def apply() -> None:
                app.before_request_funcs[None] = [f for f in before if f.__name__ not in names]

            return apply

        import app.request_hooks as request_hooks

        real_request_id = request_hooks.request_id_for
        real_deadline = request_hooks.start_database_deadline

        def no_request_id() -> None:
            request_hooks.request_id_for = lambda scope: "-"  # type: ignore[assignment]

        def no_database_deadline() -> None:
            request_hooks.start_database_deadline = lambda seconds: None  # type: ignore[assignment]

        variants: dict[str, Callable[[], None]] = {
            "everything on": lambda: None,
            "access log": lambda: setattr(hooks.access_log, "write", lambda *a: None),
            "metrics": lambda: setattr(hooks.metrics, "observe", lambda *a: None),
            "security headers": lambda: setattr(
                hooks.security_headers, "added_to", lambda headers, nonce: list(headers)
            ),
            "request id": no_request_id,
            "identity": without("identify_request"),
            "CSRF check": without("check_csrf"),
            "database deadline": no_database_deadline,
            "ASGI middlewares (admission, websocket drain, the hooks' own wrapper and parts)": (
                lambda: setattr(app, "middleware_stack", quart_asgi)
            ),
            "everything off": lambda: (
                without(*HOOKS_BEFORE)(),
                setattr(app, "middleware_stack", quart_asgi),
            ),
        }

        async def block() -> float:
            """CPU microseconds per request over `requests` requests."""
            started = time.process_time()
            for _ in range(requests):
                await _request(app)
            return (time.process_time() - started) / requests * 1e6

        def use(apply: Callable[[], None]) -> None:
            restore()
            request_hooks.request_id_for = real_request_id
            request_hooks.start_database_deadline = real_deadline
            apply()

        # Paired blocks: each variant's block right after a block with everything on, in a
        # shuffled order per round; a cost is the median of those pairs' differences. A drift
        # of the machine's speed (another process, the host) moves both blocks of a pair alike;
        # the fastest round of each variant, the former figure, gave shares of -15 to +25 us.
        shuffle = random.Random(30)
        names = [name for name in variants if name != "everything on"]
        for name in names:  # warm each variant's code path once
            use(variants[name])
            for _ in range(50):
                await _request(app)
        differences: dict[str, list[float]] = {name: [] for name in names}
        on_samples: list[float] = []
        for _ in range(rounds):
            shuffle.shuffle(names)
            for name in names:
                use(variants["everything on"])
                on = await block()
                use(variants[name])
                differences[name].append(on - await block())
                on_samples.append(on)
        restore()
        request_hooks.request_id_for = real_request_id
        request_hooks.start_database_deadline = real_deadline
    costs = {
        name: statistics.median(values)
        for name, values in differences.items()
        if name != "everything off"
    }
    costs["all hooks"] = statistics.median(differences["everything off"])
    costs["request, everything on"] = statistics.median(on_samples)
    costs["spread"] = max(_spread(values) for values in differences.values())
    return costs


def _spread(values: list[float]) -> float:
    """Half the interquartile range of `values` over the square root of their count: about
    how far their median may be off, in the same unit."""
    if len(values) < 4:
        return float("nan")
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) / 2 / len(values) ** 0.5


def main() -> None:
    rounds, requests = (int(value) for value in sys.argv[1:3])
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-hooks-"))
    costs = asyncio.run(measure(rounds, requests))
    print(json.dumps(costs))


if __name__ == "__main__":
    main()
