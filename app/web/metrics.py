"""`GET /metrics` (app/metrics.py lists the metrics).

`METRICS_TOKEN`, when set, makes the route require `Authorization: Bearer <token>` (compared in
constant time); its answer is never cached.
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from quart import Blueprint, Quart, Response, request
from quart_schema import hide

from app import state
from app.auth.identity import without_user_identity
from app.metric_files import MULTIPROCESS_DIRECTORY
from app.metrics import ONLINE_USERS

blueprint = Blueprint("metrics", __name__)


def register_metrics(app: Quart) -> None:
    """Serve `GET /metrics` (requests are observed by app.request_hooks)."""
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
