"""The Flask-APScheduler 1.11 REST API under `/scheduler` (contract §5; SCHEDULER_API_PREFIX
moves it, as upstream's setting does), for admins only. Bodies are JSON whatever their
Content-Type, as upstream reads them.

Bare JSON, not the envelope; errors are `{"error_message": "..."}` as Flask-APScheduler sends
them: 404 `Job X not found`, 409 `Job X already exists.`, 400 for a bad definition, a function
that is not a registered job function, start when running or shutdown when stopped; 401 (with
`WWW-Authenticate`) without credentials, 403 for non-admins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from pydantic import BaseModel, ConfigDict, RootModel
from quart import Blueprint, Response, jsonify, request
from quart.blueprints import BlueprintSetupState
from quart_schema import RequestSchemaValidationError, tag, validate_request
from redis.exceptions import RedisError
from werkzeug.exceptions import Forbidden, HTTPException
from werkzeug.routing import PathConverter

from app import state
from app.api.conditional import (
    conditional_get,
    conditional_write,
    not_modified,
    with_etag,
    write_precondition,
)
from app.api.idempotency import idempotent
from app.api.openapi import NoContent, documents
from app.auth.identity import require_identity
from app.envelope import describe_validation_error, service_error_answer
from app.error_bodies import UNAVAILABLE_SECONDS, scheduler_error
from app.errors import ServiceError
from app.job_definitions import JobDefinition, describe_job_error
from app.json_provider import JSON_OF_ANY_CONTENT_TYPE
from app.redis_client import UNREACHABLE
from app.scheduler.job_manager import VersionedJob
from app.scheduler.registry import ForbiddenJobFunction
from app.scheduler.serialize import JobDefinitionError
from app.scheduler.service import SchedulerService, SchedulerStateError

# Registered under SCHEDULER_API_PREFIX (`/scheduler` by default; app/factory.py).
blueprint = Blueprint("scheduler", __name__)


class StoredJobId(PathConverter):
    """Any stored job's id, slashes and line breaks included ("../x" written by hand or an
    older version): such a job can still be read and deleted. Ids this API accepts are safe
    path segments (app.job_definitions)."""

    regex = "[^/](?s:.*?)"


@blueprint.record_once
def _register_converter(setup: BlueprintSetupState) -> None:
    setup.app.url_map.converters["job_id"] = StoredJobId


V = TypeVar("V", bound=Callable[..., Any])


class JobRequest(RootModel[JobDefinition]):
    """A job in Flask-APScheduler's format: `func` ("module:function", registered), `trigger`
    (`date`, `interval`, `cron`) with that trigger's fields, or `crontab` ("*/5 * * * *"), or
    neither (run once, now). app.job_definitions has the fields."""


class SchedulerError(BaseModel):
    """Flask-APScheduler's error body."""

    error_message: str


class SchedulerInfo(BaseModel):
    current_host: str
    allowed_hosts: list[str]
    running: bool
    state: Literal["running", "paused", "stopped"]
    leader: str | None


class JobOut(BaseModel):
    """A job in Flask-APScheduler's format, with its trigger's fields (`trigger`, `seconds`,
    `minute`, `run_date`, …) beside these, and times in ISO 8601."""

    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    func: str
    args: list[Any]
    kwargs: dict[str, Any]
    trigger: str
    refused: str | None = None  # why a stored job may not run here (it stays paused)


class JobRunOut(BaseModel):
    scheduled_time: str | None
    start: str | None
    duration: float | None
    outcome: Literal["success", "error", "missed", "skipped"]
    error: str | None
    manual: bool
    worker: str


class JobList(RootModel[list[JobOut]]):
    """Every job, soonest next run first (paused ones last)."""


class JobRunList(RootModel[list[JobRunOut]]):
    """A job's last runs, newest first."""


# Any scheduler route may answer these: a malformed request, no or wrong credentials, not an
# admin, too many failed credential checks, the shared store down.
SCHEDULER_ERRORS = (400, 401, 403, 429, 503)


def scheduler_responds(success: type[Any], *errors: int, status: int = 200) -> Callable[[V], V]:
    return documents(success, status, {*SCHEDULER_ERRORS, *errors}, SchedulerError, secured=True)


def error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    response = jsonify(scheduler_error(message))
    response.status_code = status
    for key, value in headers or []:
        response.headers.add(key, value)
    return response


def not_found(job_id: str) -> Response:
    return error(404, f"Job {job_id} not found")


def job_answer(job: VersionedJob) -> Response:
    """The job's JSON with its version as the `ETag` (app.scheduler.job_stores)."""
    response = jsonify(job.data)
    return response if job.version is None else with_etag(response, job.version)


def scheduler() -> SchedulerService:
    return state.scheduler()


@blueprint.before_request
async def json_of_any_content_type() -> None:
    """A body is JSON whatever its Content-Type, as Flask-APScheduler reads it (its clients,
    and Flask's test client, often send none); one that does not parse is still a 400."""
    setattr(request._get_current_object(), JSON_OF_ANY_CONTENT_TYPE, True)  # type: ignore[attr-defined]


@blueprint.before_request
async def admins_only() -> None:
    if not require_identity().actor.is_admin:
        raise Forbidden("only an admin may use the scheduler API")


STORE_UNAVAILABLE = "the scheduler's store (Redis) is unavailable; try again later"
RETRY_AFTER = str(UNAVAILABLE_SECONDS)


@blueprint.before_request
async def store_reachable() -> Response | None:
    """503 at once while this worker knows Redis is down (its circuit is open)."""
    redis = state.redis()
    if redis is not None and redis.circuit.is_open:
        return error(503, STORE_UNAVAILABLE, [("Retry-After", RETRY_AFTER)])
    return None


@blueprint.errorhandler(RedisError)
async def store_failed(exception: RedisError) -> Response:
    """A job-store or lease call that failed (bounded by REDIS_TIMEOUT): 503, and the worker's
    circuit opens so the next calls answer at once."""
    redis = state.redis()
    if redis is not None and isinstance(exception, UNREACHABLE):
        redis.circuit.record_failure(exception)
    return error(503, STORE_UNAVAILABLE, [("Retry-After", RETRY_AFTER)])


@blueprint.errorhandler(HTTPException)
async def http_error(exception: HTTPException) -> Response:
    headers = [(k, v) for k, v in exception.get_headers() if k.lower() != "content-type"]
    return error(exception.code or 500, exception.description or exception.name, headers)


@blueprint.errorhandler(ServiceError)
async def service_error(exception: ServiceError) -> Response:
    """An Idempotency-Key in use (409, Retry-After) or used for another request (422); a
    stale If-Match (412)."""
    status, headers = service_error_answer(exception)
    return error(status, exception.message, headers)


@blueprint.errorhandler(RequestSchemaValidationError)
async def invalid_body(exception: RequestSchemaValidationError) -> Response:
    if (await request.get_data()) == b"":
        return error(400, describe_validation_error(exception.validation_error))
    return error(400, describe_job_error(exception.validation_error))


@blueprint.get("")
@scheduler_responds(SchedulerInfo)
@tag(["scheduler"])
async def get_scheduler_info() -> Response:
    """`{"current_host", "allowed_hosts", "running", "state", "leader"}`."""
    return jsonify(await scheduler().info())


async def _state_change(action: Callable[[], Awaitable[None]]) -> Response:
    try:
        await action()
    except SchedulerStateError as exception:
        return error(400, str(exception))
    return Response(status=204)


@blueprint.post("/pause")
@scheduler_responds(NoContent, status=204)
@tag(["scheduler"])
async def pause_scheduler() -> Response:
    """Pause job processing on every worker (204)."""
    return await _state_change(scheduler().pause)


@blueprint.post("/resume")
@scheduler_responds(NoContent, status=204)
@tag(["scheduler"])
async def resume_scheduler() -> Response:
    """Resume job processing (204)."""
    return await _state_change(scheduler().resume)


@blueprint.post("/start")
@scheduler_responds(NoContent, status=204)
@tag(["scheduler"])
async def start_scheduler() -> Response:
    """Start a stopped scheduler (204); 400 when it is running."""
    return await _state_change(scheduler().start_processing)


@blueprint.post("/shutdown")
@scheduler_responds(NoContent, status=204)
@tag(["scheduler"])
async def shutdown_scheduler() -> Response:
    """Stop job processing (204); 400 when it is stopped. Running jobs finish."""
    return await _state_change(scheduler().shutdown)


@blueprint.get("/jobs")
@scheduler_responds(JobList)
@tag(["scheduler"])
async def get_jobs() -> Response:
    return jsonify(await scheduler().get_jobs())


@blueprint.post("/jobs")
@scheduler_responds(JobOut, 409, 413, 422)
@idempotent
@validate_request(JobRequest)
@tag(["scheduler"])
async def add_job(data: JobRequest) -> Response:
    """Add a job; 409 if its id exists, 400 for a bad definition or function."""
    job = data.root
    try:
        return job_answer(await scheduler().add_job(job))
    except ConflictingIdError:
        return error(409, f"Job {job.id} already exists.")
    except (JobDefinitionError, ForbiddenJobFunction) as exception:
        return error(400, str(exception))


# `job_id:`: any stored id (StoredJobId); the action routes below are more specific and win.
@blueprint.get("/jobs/<job_id:job_id>")
@scheduler_responds(JobOut, 404)
@conditional_get
@tag(["scheduler"])
async def get_job(job_id: str) -> Response:
    """The job, with its version as the `ETag`; 304 for an `If-None-Match` that matches."""
    try:
        if "If-None-Match" in request.headers:
            unchanged = not_modified(await scheduler().job_version(job_id))
            if unchanged is not None:
                return unchanged
        return job_answer(await scheduler().get_job(job_id))
    except JobLookupError:
        return not_found(job_id)


@blueprint.delete("/jobs/<job_id:job_id>")
@scheduler_responds(NoContent, 404, 409, 412, 422, 428, status=204)
@idempotent
@conditional_write
@tag(["scheduler"])
async def delete_job(job_id: str) -> Response:
    """Remove the job; with `If-Match`, only if it is still at that version (else 412)."""
    try:
        await scheduler().remove_job(job_id, write_precondition())
    except JobLookupError:
        return not_found(job_id)
    return Response(status=204)


@blueprint.patch("/jobs/<job_id:job_id>")
@scheduler_responds(JobOut, 404, 409, 412, 413, 422, 428)
@idempotent
@conditional_write
@validate_request(JobRequest)
@tag(["scheduler"])
async def update_job(job_id: str, data: JobRequest) -> Response:
    """Change a job's fields; with `trigger` (or `crontab`) it is rescheduled. With
    `If-Match`, only if the job is still at that version (else 412)."""
    try:
        return job_answer(await scheduler().modify_job(job_id, data.root, write_precondition()))
    except JobLookupError:
        return not_found(job_id)
    except (JobDefinitionError, ForbiddenJobFunction) as exception:
        return error(400, str(exception))


async def _job_action(job_id: str, action: Callable[[str], Awaitable[VersionedJob]]) -> Response:
    try:
        return job_answer(await action(job_id))
    except JobLookupError:
        return not_found(job_id)
    except JobDefinitionError as exception:  # resuming a refused job
        return error(400, str(exception))


@blueprint.post("/jobs/<job_id>/pause")
@scheduler_responds(JobOut, 404)
@tag(["scheduler"])
async def pause_job(job_id: str) -> Response:
    return await _job_action(job_id, scheduler().pause_job)


@blueprint.post("/jobs/<job_id>/resume")
@scheduler_responds(JobOut, 404)
@tag(["scheduler"])
async def resume_job(job_id: str) -> Response:
    return await _job_action(job_id, scheduler().resume_job)


@blueprint.post("/jobs/<job_id>/run")
@scheduler_responds(JobOut, 404, 409, 422)
@idempotent
@tag(["scheduler"])
async def run_job(job_id: str) -> Response:
    """Run the job now, once, on this worker; the outcome goes to its run history."""
    return await _job_action(job_id, scheduler().run_job)


@blueprint.get("/jobs/<job_id>/runs")
@scheduler_responds(JobRunList, 404)
@tag(["scheduler"])
async def job_runs(job_id: str) -> Response:
    """The last runs, newest first: `[{"scheduled_time", "start", "duration" (s), "outcome"
    ("success", "error", "missed", "skipped"), "error", "manual", "worker"}]`."""
    try:
        return jsonify(await scheduler().runs(job_id))
    except JobLookupError:
        return not_found(job_id)
