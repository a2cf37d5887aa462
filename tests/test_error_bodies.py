"""app.error_bodies: the two error shapes and the Retry-After policy every error answer uses."""

from __future__ import annotations

from app.error_bodies import (
    BUSY_SECONDS,
    UNAVAILABLE_SECONDS,
    envelope_error,
    error_body,
    scheduler_error,
)
from app.errors import IdempotencyInProgressError


def test_the_envelope_and_the_scheduler_shape() -> None:
    assert envelope_error(404, "no", "GET /api/v1/user/x") == {
        "code": 404,
        "msg": "no",
        "request": "GET /api/v1/user/x",
        "status": "failed",
    }
    assert scheduler_error("Job x not found") == {"error_message": "Job x not found"}


def test_the_shape_follows_the_path() -> None:
    options = {"method": "POST", "scheduler_prefix": "/scheduler"}
    for path in ("/scheduler", "/scheduler/jobs"):
        assert error_body(503, "busy", path=path, **options) == {"error_message": "busy"}
    for path in ("/schedulers", "/api/v1/tag"):
        assert error_body(503, "busy", path=path, **options)["status"] == "failed"
    moved = error_body(503, "busy", path="/api/jobs/x", method="GET", scheduler_prefix="/api/jobs")
    assert moved == {"error_message": "busy"}


def test_one_retry_after_policy() -> None:
    assert BUSY_SECONDS < UNAVAILABLE_SECONDS
    assert IdempotencyInProgressError("x").retry_after == BUSY_SECONDS
