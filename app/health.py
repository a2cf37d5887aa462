"""Liveness and readiness probes for container runtimes and load balancers (bare JSON)."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_schema import hide
from sqlalchemy import text

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@hide
async def liveness() -> tuple[dict, int]:
    """200 while the process serves requests; touches nothing else."""
    return {"status": "ok"}, 200


@blueprint.get("/readyz")
@hide
async def readiness() -> tuple[dict, int]:
    """200 when the database answers `SELECT 1`, else 503 (the error is logged, not shown)."""
    try:
        async with current_app.extensions["database"].engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 (any failure means "not ready")
        current_app.logger.exception("readiness check failed")
        return {"status": "unavailable", "database": "down"}, 503
    return {"status": "ok", "database": "up"}, 200
