"""Liveness and readiness probes for container runtimes and load balancers (bare JSON)."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint
from quart_schema import hide

from app import state

blueprint = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@blueprint.get("/healthz")
@hide
async def liveness() -> tuple[dict[str, str], int]:
    """200 while the process serves requests; touches nothing else."""
    return {"status": "ok"}, 200


READINESS_TIMEOUT_SECONDS = 1.5  # so /readyz answers within 2 s


@blueprint.get("/readyz")
@hide
async def readiness() -> tuple[dict[str, Any], int]:
    """200 when the database answers `SELECT 1` within 1.5 s, else 503 (the error is logged, not
    shown). Redis is not part of readiness: without it the service degrades, it does not stop
    (docs/operations.md); its state is reported as `redis`: "up", "down" or "off"."""
    redis = state.redis()
    redis_state = "off" if redis is None else ("down" if redis.circuit.is_open else "up")
    try:
        await state.database().ping(READINESS_TIMEOUT_SECONDS)
    except Exception as error:
        log.warning("readiness check failed: %s", type(error).__name__)
        return {"status": "unavailable", "database": "down", "redis": redis_state}, 503
    return {"status": "ok", "database": "up", "redis": redis_state}, 200
