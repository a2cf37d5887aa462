"""`GET /metrics` (app/metrics.py lists the metrics) and the hooks that time every request.

`METRICS_TOKEN`, when set, makes the route require `Authorization: Bearer <token>` (compared in
constant time); its answer is never cached.
"""

from __future__ import annotations

import hmac
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from quart import Blueprint, Quart, Response, g, request
from quart_schema import hide

from app import state
from app.auth.identity import without_user_identity
from app.metrics import HTTP_LATENCY, HTTP_REQUESTS, MULTIPROCESS_DIRECTORY, ONLINE_USERS

UNMATCHED_ROUTE = "<unmatched>"

blueprint = Blueprint("metrics", __name__)


def register_metrics(app: Quart) -> None:
    """Count and time every request (from app/request_log.py's start), serve `GET /metrics`."""

    counters: dict[tuple[str, str, int], Counter] = {}
    timers: dict[tuple[str, str], Histogram] = {}

    @app.after_request
    async def observe(response: Response) -> Response:
        started = g.get("request_started")  # set by app/request_log.py
        if started is not None:
            rule = request.url_rule
            route = rule.rule if rule is not None else UNMATCHED_ROUTE
            # The labelled children, resolved once per label set (a lock and a lookup each).
            key = (route, request.method, response.status_code)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = HTTP_REQUESTS.labels(route, key[1], str(key[2]))
            counter.inc()
            timer = timers.get(key[:2])
            if timer is None:
                timer = timers[key[:2]] = HTTP_LATENCY.labels(route, key[1])
            timer.observe(time.perf_counter() - started)
        return response

    app.register_blueprint(blueprint)


@blueprint.get("/metrics")
@hide
@without_user_identity
async def metrics() -> Response:
    """All workers' metrics in the Prometheus text format."""
    token = state.settings().metrics_token
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return Response(
                "metrics need a bearer token\n",
                401,
                {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
            )
    await _refresh_online_users()
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


async def _refresh_online_users() -> None:
    recorder = state.app_state().presence
    settings = state.settings()
    if recorder is None:
        return
    try:
        online = await recorder.store.online(settings.online_last_minutes)
    except Exception:  # a failing presence store must not fail the scrape
        return
    ONLINE_USERS.set(len(online))
