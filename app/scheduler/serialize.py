"""Jobs as JSON in Flask-APScheduler's format, and the APScheduler trigger of a validated
definition (app.job_definitions).

Source: Flask-APScheduler 1.11 `utils.job_to_dict`, `trigger_to_dict` and `pop_trigger`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.job_definitions import (
    CronJob,
    CrontabJob,
    DateJob,
    IntervalJob,
    JobDefinition,
    trigger_arguments,
)


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


def build_trigger(job: JobDefinition, timezone: Any) -> BaseTrigger | None:
    """The APScheduler trigger of a validated definition (None: run once, now). Raises
    `JobDefinitionError` for what only APScheduler checks (cron field values, dates)."""
    arguments = trigger_arguments(job)
    arguments.setdefault("timezone", timezone)
    try:
        if isinstance(job, CrontabJob):
            return CronTrigger.from_crontab(job.crontab, timezone=arguments["timezone"])
        if isinstance(job, DateJob):
            return DateTrigger(**arguments)
        if isinstance(job, IntervalJob):
            return IntervalTrigger(**arguments)
        if isinstance(job, CronJob):
            return CronTrigger(**arguments)
    except (ValueError, TypeError) as error:
        kind = "crontab" if isinstance(job, CrontabJob) else job.trigger
        raise JobDefinitionError(f"{kind}: {error}") from error
    return None
