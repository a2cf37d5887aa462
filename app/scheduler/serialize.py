"""Jobs as JSON in Flask-APScheduler's format, and job definitions from JSON (validated).

Source: Flask-APScheduler 1.11 `utils.job_to_dict`, `trigger_to_dict` and `pop_trigger`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.job import Job
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

TRIGGER_FIELDS = {
    "date": ("run_date", "timezone"),
    "interval": (
        "weeks",
        "days",
        "hours",
        "minutes",
        "seconds",
        "start_date",
        "end_date",
        "timezone",
        "jitter",
    ),
    "cron": (
        "year",
        "month",
        "day",
        "week",
        "day_of_week",
        "hour",
        "minute",
        "second",
        "start_date",
        "end_date",
        "timezone",
        "jitter",
    ),
}
JOB_FIELDS = {
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
}
ALL_TRIGGER_FIELDS = {field for fields in TRIGGER_FIELDS.values() for field in fields}


class JobDefinitionError(ValueError):
    """A job definition that cannot be scheduled; `str()` names the field and the rule."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def trigger_to_dict(trigger: BaseTrigger) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if isinstance(trigger, DateTrigger):
        data["trigger"] = "date"
        data["run_date"] = _iso(trigger.run_date)
    elif isinstance(trigger, IntervalTrigger):
        data["trigger"] = "interval"
        data["start_date"] = _iso(trigger.start_date)
        if trigger.end_date:
            data["end_date"] = _iso(trigger.end_date)
        weeks, days = divmod(trigger.interval.days, 7)
        minutes, seconds = divmod(trigger.interval.seconds, 60)
        hours, minutes = divmod(minutes, 60)
        for name, value in (
            ("weeks", weeks),
            ("days", days),
            ("hours", hours),
            ("minutes", minutes),
            ("seconds", seconds),
        ):
            if value > 0:
                data[name] = value
    elif isinstance(trigger, CronTrigger):
        data["trigger"] = "cron"
        if trigger.start_date:
            data["start_date"] = _iso(trigger.start_date)
        if trigger.end_date:
            data["end_date"] = _iso(trigger.end_date)
        for field in trigger.fields:
            if not field.is_default:
                data[field.name] = str(field)
    else:
        data["trigger"] = str(trigger)
    return data


def job_to_dict(job: Job) -> dict[str, Any]:
    """`{"id", "name", "func", "args", "kwargs", "trigger", <trigger fields>,
    "misfire_grace_time", "max_instances", "next_run_time"}` (ISO 8601 times)."""
    data: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "func": job.func_ref,
        "args": list(job.args),
        "kwargs": dict(job.kwargs),
        **trigger_to_dict(job.trigger),
    }
    if not job.pending:
        data["misfire_grace_time"] = job.misfire_grace_time
        data["max_instances"] = job.max_instances
        data["next_run_time"] = _iso(job.next_run_time)
    return data


def build_trigger(data: dict[str, Any], timezone: Any) -> BaseTrigger | None:
    """Pop the trigger fields (or `crontab`) from `data` and build the trigger; None when the
    definition names none. Raises `JobDefinitionError`."""
    crontab = data.pop("crontab", None)
    name = data.pop("trigger", None)
    args = {field: data.pop(field) for field in list(data) if field in ALL_TRIGGER_FIELDS}
    if crontab is not None:
        if name not in (None, "cron") or args:
            raise JobDefinitionError("crontab: give either crontab or trigger fields, not both")
        if not isinstance(crontab, str):
            raise JobDefinitionError('crontab: must be a string like "*/5 * * * *"')
        try:
            return CronTrigger.from_crontab(crontab, timezone=timezone)
        except (ValueError, TypeError) as error:
            raise JobDefinitionError(f"crontab: {error}") from error
    if name is None:
        if args:
            raise JobDefinitionError("trigger: required with trigger fields (date, interval, cron)")
        return None
    if name not in TRIGGER_FIELDS:
        raise JobDefinitionError(f"trigger: {name!r} is not one of date, interval, cron")
    unexpected = set(args) - set(TRIGGER_FIELDS[name])
    if unexpected:
        raise JobDefinitionError(f"{sorted(unexpected)[0]}: not a field of the {name} trigger")
    args.setdefault("timezone", timezone)
    try:
        if name == "date":
            return DateTrigger(**args)
        if name == "interval":
            units = ("weeks", "days", "hours", "minutes", "seconds")
            if not any(args.get(unit) for unit in units):
                raise JobDefinitionError("interval: give weeks, days, hours, minutes or seconds")
            for unit in units:
                if unit in args and (
                    not isinstance(args[unit], int | float)
                    or isinstance(args[unit], bool)
                    or args[unit] < 0
                ):
                    raise JobDefinitionError(f"{unit}: must be a number of {unit}, 0 or more")
            return IntervalTrigger(**args)
        return CronTrigger(**args)
    except JobDefinitionError:
        raise
    except (ValueError, TypeError) as error:
        raise JobDefinitionError(f"{name}: {error}") from error


def check_job_fields(data: dict[str, Any], *, partial: bool) -> None:
    """Refuse unknown fields and wrong types. Raises `JobDefinitionError` naming the field."""
    for key in data:
        if key not in JOB_FIELDS and key not in ALL_TRIGGER_FIELDS | {"trigger", "crontab"}:
            raise JobDefinitionError(f"{key}: unknown field")
    if not partial and "func" not in data:
        raise JobDefinitionError("func: required")
    checks = {
        "id": (str, "a string"),
        "name": (str, "a string"),
        "args": (list, "a list"),
        "kwargs": (dict, "an object"),
        "coalesce": (bool, "true or false"),
        "replace_existing": (bool, "true or false"),
        "executor": (str, "a string"),
    }
    for key, (kind, words) in checks.items():
        if key in data and not isinstance(data[key], kind):
            raise JobDefinitionError(f"{key}: must be {words}")
    if "id" in data and not 1 <= len(data["id"]) <= 191:
        raise JobDefinitionError("id: 1 to 191 characters")
    for key in ("max_instances", "misfire_grace_time"):
        value = data.get(key)
        if (
            key in data
            and value is not None
            and (not isinstance(value, int) or isinstance(value, bool) or value < 1)
        ):
            raise JobDefinitionError(f"{key}: must be a whole number, 1 or more")
    if data.get("executor") not in (None, "default", "threadpool"):
        raise JobDefinitionError("executor: 'default' or 'threadpool'")
    for key in ("next_run_time", "run_date", "start_date", "end_date"):
        if data.get(key) is not None:
            try:
                datetime.fromisoformat(str(data[key]))
            except ValueError as error:
                raise JobDefinitionError(f"{key}: not an ISO 8601 date and time") from error
    if data.get("timezone") is not None:
        try:
            ZoneInfo(str(data["timezone"]))
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise JobDefinitionError(f"timezone: unknown time zone {data['timezone']!r}") from error
    jitter = data.get("jitter")
    if jitter is not None and (
        not isinstance(jitter, int) or isinstance(jitter, bool) or jitter < 0
    ):
        raise JobDefinitionError("jitter: must be a whole number of seconds, 0 or more")
