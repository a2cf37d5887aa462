"""Job definitions in Flask-APScheduler 1.11's format, validated once, by one strict pydantic
model per trigger kind (a discriminated union on `trigger`).

    {"id", "name", "func": "module:function", "args", "kwargs", "misfire_grace_time",
     "max_instances", "coalesce", "executor", "next_run_time", "replace_existing",
     "trigger": "date" | "interval" | "cron", <that trigger's fields>}

or `"crontab": "*/5 * * * *"` instead of a trigger, or neither (run once, now). Unknown fields,
fields of another trigger and wrong types are refused, naming the field. The same models
validate `SCHEDULER_JOBS` (and Flask-APScheduler's `JOBS`) at start-up, the API's POST, and
(with every field optional) its PATCH. Source: Flask-APScheduler `utils.pop_trigger`,
APScheduler 3's trigger arguments.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from app.validation import field_name

TRIGGERS = ("date", "interval", "cron")
INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
JOB_FIELDS = (
    "id",
    "name",
    "func",
    "args",
    "kwargs",
    "misfire_grace_time",
    "max_instances",
    "coalesce",
    "executor",
    "next_run_time",
    "replace_existing",
)


def _iso_datetime(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError("not an ISO 8601 date and time") from error
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {value!r}") from error
    return value


def _safe_id(value: str) -> str:
    if not re.match(JOB_ID_PATTERN, value):
        raise ValueError(JOB_ID_RULE)
    return value


IsoDateTime = Annotated[StrictStr, AfterValidator(_iso_datetime)]
TimeZoneName = Annotated[StrictStr, AfterValidator(_time_zone)]
# Upper bounds keep every value inside what APScheduler and `timedelta` can compute (a
# `seconds` of 1e300 overflowed into a 500): ten years for an interval, a day for a jitter, 30
# days of grace; a job id is a safe path segment (no "/", no control characters).
MAX_INTERVAL_SECONDS = 10 * 365 * 86400
MAX_JITTER_SECONDS = 86400
MAX_GRACE_SECONDS = 30 * 86400
MAX_INSTANCES = 100
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z"
JOB_ID_RULE = (
    "must be 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
)
UNIT_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
WholeSeconds = Annotated[StrictInt, Field(ge=0, le=MAX_JITTER_SECONDS)]
AtLeastOne = Annotated[StrictInt, Field(ge=1)]
Amount = Annotated[StrictInt | StrictFloat, Field(ge=0)]
CronField = Annotated[StrictStr, Field(max_length=200)] | Annotated[StrictInt, Field(ge=0, le=9999)]


class JobFields(BaseModel):
    """The fields every job has, whatever its trigger."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: Annotated[StrictStr, AfterValidator(_safe_id)] | None = None
    name: Annotated[StrictStr, Field(max_length=200)] | None = None
    func: StrictStr | None = None  # checked against the registry when the job is added
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    misfire_grace_time: Annotated[StrictInt, Field(ge=1, le=MAX_GRACE_SECONDS)] | None = None
    max_instances: Annotated[StrictInt, Field(ge=1, le=MAX_INSTANCES)] | None = None
    coalesce: StrictBool | None = None
    executor: Literal["default", "threadpool"] | None = None
    next_run_time: IsoDateTime | None = None
    replace_existing: StrictBool | None = None


class DateJob(JobFields):
    trigger: Literal["date"]
    run_date: IsoDateTime | None = None
    timezone: TimeZoneName | None = None


class IntervalJob(JobFields):
    trigger: Literal["interval"]
    weeks: Amount | None = None
    days: Amount | None = None
    hours: Amount | None = None
    minutes: Amount | None = None
    seconds: Amount | None = None
    start_date: IsoDateTime | None = None
    end_date: IsoDateTime | None = None
    timezone: TimeZoneName | None = None
    jitter: WholeSeconds | None = None

    @model_validator(mode="after")
    def _has_a_period(self) -> IntervalJob:
        if not any(getattr(self, unit) for unit in INTERVAL_UNITS):
            raise ValueError("interval: give weeks, days, hours, minutes or seconds")
        for unit in INTERVAL_UNITS:
            amount = getattr(self, unit)
            if amount is not None and amount * UNIT_SECONDS[unit] > MAX_INTERVAL_SECONDS:
                limit = MAX_INTERVAL_SECONDS // UNIT_SECONDS[unit]
                raise ValueError(f"{unit}: must be at most {limit} (ten years)")
        if self.period_seconds > MAX_INTERVAL_SECONDS:
            raise ValueError("interval: must be at most ten years in all")
        return self

    @property
    def period_seconds(self) -> float:
        """The interval in seconds (its units added up)."""
        return sum((getattr(self, unit) or 0) * UNIT_SECONDS[unit] for unit in INTERVAL_UNITS)

    @property
    def period_field(self) -> str:
        """The one unit given, to name in errors; "interval" when several are."""
        given = [unit for unit in INTERVAL_UNITS if getattr(self, unit)]
        return given[0] if len(given) == 1 else "interval"


class CronJob(JobFields):
    trigger: Literal["cron"]
    year: CronField | None = None
    month: CronField | None = None
    day: CronField | None = None
    week: CronField | None = None
    day_of_week: CronField | None = None
    hour: CronField | None = None
    minute: CronField | None = None
    second: CronField | None = None
    start_date: IsoDateTime | None = None
    end_date: IsoDateTime | None = None
    timezone: TimeZoneName | None = None
    jitter: WholeSeconds | None = None


class CrontabJob(JobFields):
    """`crontab` (five fields, e.g. "*/5 * * * *") instead of a trigger; `trigger` may only
    say "cron"."""

    crontab: StrictStr
    trigger: Literal["cron"] | None = None


class ImmediateJob(JobFields):
    """No trigger: APScheduler runs it once, now, then removes it."""

    trigger: None = None


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    if not isinstance(value, dict):
        return None
    if "crontab" in value:
        return "crontab"
    trigger = value.get("trigger")
    if trigger is None:
        return "immediate"
    return trigger if trigger in TRIGGERS else None


JobDefinition = Annotated[
    Annotated[DateJob, Tag("date")]
    | Annotated[IntervalJob, Tag("interval")]
    | Annotated[CronJob, Tag("cron")]
    | Annotated[CrontabJob, Tag("crontab")]
    | Annotated[ImmediateJob, Tag("immediate")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger",
        custom_error_message="trigger: must be one of date, interval, cron (or give crontab)",
    ),
]
JOB_DEFINITION: TypeAdapter[JobDefinition] = TypeAdapter(JobDefinition)


KINDS = (*TRIGGERS, "crontab", "immediate")
_UNION_MEMBER_TAGS = {"int", "float", "str", "bool"}


def describe_job_error(error: Exception) -> str:
    """One sentence per invalid field, named as the client wrote it (`seconds: …`, not the
    union's internal path): what the scheduler API answers with 400."""
    if not isinstance(error, ValidationError):
        return "request body must be a JSON object"
    problems = []
    for item in error.errors(include_url=False):
        if item["type"] == "trigger" and not isinstance(item["input"], dict):
            return "request body must be a JSON object"
        # A union's members name themselves in the location (`seconds.int`, `hour.constrained
        # -str`): the client wrote `seconds`.
        location = [
            part
            for part in item["loc"]
            if part != "root"
            and not (isinstance(part, str) and part in _UNION_MEMBER_TAGS)
            and not (isinstance(part, str) and part.startswith("constrained-"))
        ]
        kind = None
        if location and location[0] in KINDS:
            kind, location = location[0], location[1:]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and kind in TRIGGERS:
            message = f"not a field of the {kind} trigger"
        elif item["type"] == "extra_forbidden" and kind == "immediate":
            message = "unknown field (a trigger's field needs its trigger)"
        if item["type"] == "trigger" or not location or message.startswith(f"{location[0]}:"):
            problems.append(message if item["type"] != "model_type" else "must be a JSON object")
        else:
            problems.append(f"{field_name(tuple(location))}: {message}")
    # One sentence per field: a value that fits no member of a union fails each of them.
    first_per_field: dict[str, str] = {}
    for problem in problems:
        first_per_field.setdefault(problem.split(":", 1)[0], problem)
    return "; ".join(first_per_field.values())


def parse_job(data: Any) -> JobDefinition:
    """Validate one job definition. Raises `pydantic.ValidationError`."""
    return JOB_DEFINITION.validate_python(data)


def job_arguments(job: JobDefinition) -> dict[str, Any]:
    """The `add_job`/`modify_job` keyword arguments given (not the trigger's)."""
    return {name: getattr(job, name) for name in JOB_FIELDS if name in job.model_fields_set}


def trigger_arguments(job: JobDefinition) -> dict[str, Any]:
    """The trigger's fields that were given (for `build_trigger`)."""
    given = job.model_fields_set - set(JOB_FIELDS) - {"trigger", "crontab"}
    return {name: getattr(job, name) for name in given}
