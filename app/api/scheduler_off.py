"""`/scheduler` when the scheduler or its API is off: a 404 that says why, in the API's own
error shape (`{"error_message": …}`, as Flask-APScheduler answers), instead of a bare 404."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify
from quart_schema import hide

from app.settings import Settings


def scheduler_off_blueprint(settings: Settings) -> Blueprint:
    """Answers every `/scheduler…` route with 404 and the setting to change."""
    blueprint = Blueprint("scheduler_off", __name__, url_prefix=settings.scheduler_api_prefix)
    missing = "SCHEDULER_ENABLED=true" if not settings.scheduler_enabled else None
    if missing is None:
        missing = "SCHEDULER_API_ENABLED=true"
    message = f"the scheduler API is off on this service; set {missing} to turn it on"

    @hide
    @blueprint.route("", methods=["GET", "POST", "PATCH", "DELETE"])
    @blueprint.route("/<path:rest>", methods=["GET", "POST", "PATCH", "DELETE"])
    async def scheduler_is_off(rest: str = "") -> tuple[Response, int]:
        return jsonify({"error_message": message}), 404

    return blueprint
