"""app.job_definitions and app.scheduler.serialize without HTTP: which definitions
validate, the sentences their errors give, and the APScheduler triggers and the
Flask-APScheduler JSON (`job_to_dict`) they become."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import ValidationError

from app.job_definitions import (
    CronJob,
    CrontabJob,
    DateJob,
    ImmediateJob,
    IntervalJob,
    describe_job_error,
    job_arguments,
    parse_job,
    trigger_arguments,
)
from app.scheduler.serialize import (
    JobDefinitionError,
    build_trigger,
    job_to_dict,
    trigger_to_dict,
)

FUNC = "app.scheduler.jobs:print_test"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"trigger": "date", "run_date": "2030-01-01T00:00:00"}, DateJob),
        ({"trigger": "interval", "minutes": 5}, IntervalJob),
        ({"trigger": "cron", "minute": "*/5"}, CronJob),
        ({"crontab": "*/5 * * * *"}, CrontabJob),
        ({"crontab": "0 * * * *", "trigger": "cron"}, CrontabJob),
        ({"func": FUNC}, ImmediateJob),
    ],
)
def test_each_trigger_kind_parses_to_its_model(data, kind) -> None:
    assert type(parse_job(data)) is kind


def error_of(data) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_job(data)
    return describe_job_error(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"trigger": "weekly"}, "trigger: must be one of date, interval, cron (or give crontab)"),
        ({"trigger": "interval"}, "interval: give weeks, days, hours, minutes or seconds"),
        (
            {"trigger": "interval", "seconds": -1},
            "seconds: Input should be greater than or equal to 0",
        ),
        ({"trigger": "interval", "weeks": 10_000}, "weeks: must be at most 521 (ten years)"),
        (
            {"trigger": "interval", "minutes": 5, "minute": "1"},
            "minute: not a field of the interval trigger",
        ),
        ({"seconds": 5}, "seconds: unknown field (a trigger's field needs its trigger)"),
        ({"trigger": "date", "run_date": "soon"}, "run_date: not an ISO 8601 date and time"),
        (
            {"trigger": "cron", "timezone": "Mars/Olympus"},
            "timezone: unknown time zone 'Mars/Olympus'",
        ),
        ({"id": "../x", "trigger": "interval", "seconds": 5}, "id: must be 1 to 64 letters"),
        ({"trigger": "interval", "seconds": "5"}, "seconds: Input should be a valid integer"),
        ({"trigger": "cron", "hour": [1]}, "hour: Input should be a valid string"),
        ([], "request body must be a JSON object"),
    ],
)
def test_errors_name_the_field_as_the_client_wrote_it(data, message) -> None:
    assert error_of(data).startswith(message)


def test_a_non_validation_error_is_described_as_a_bad_body() -> None:
    assert describe_job_error(ValueError("x")) == "request body must be a JSON object"


def test_job_and_trigger_arguments_are_the_given_fields_only() -> None:
    job = parse_job({"id": "a", "func": FUNC, "trigger": "interval", "seconds": 30, "jitter": 2})
    assert job_arguments(job) == {"id": "a", "func": FUNC}
    assert trigger_arguments(job) == {"seconds": 30, "jitter": 2}
    assert isinstance(job, IntervalJob) and job.period_seconds == 30
    assert job.period_field == "seconds"
    both = parse_job({"trigger": "interval", "minutes": 1, "seconds": 30})
    assert isinstance(both, IntervalJob)
    assert both.period_seconds == 90 and both.period_field == "interval"


def test_build_trigger_makes_the_apscheduler_trigger_in_the_default_zone() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    interval = build_trigger(parse_job({"trigger": "interval", "minutes": 5}), zone)
    assert isinstance(interval, IntervalTrigger)
    assert interval.interval == timedelta(minutes=5) and interval.timezone == zone
    cron = build_trigger(parse_job({"crontab": "*/5 * * * *"}), zone)
    assert isinstance(cron, CronTrigger) and str(cron.fields[6]) == "*/5"
    date = build_trigger(
        parse_job({"trigger": "date", "run_date": "2030-01-01T00:00:00+00:00"}), zone
    )
    assert isinstance(date, DateTrigger)
    assert date.run_date == datetime(2030, 1, 1, tzinfo=UTC)
    assert build_trigger(parse_job({"func": FUNC}), zone) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"trigger": "cron", "hour": "25"}, "cron: "),
        ({"crontab": "not a crontab"}, "crontab: "),
    ],
)
def test_values_only_apscheduler_checks_raise_job_definition_error(data, message) -> None:
    with pytest.raises(JobDefinitionError) as caught:
        build_trigger(parse_job(data), UTC)
    assert str(caught.value).startswith(message)


def test_trigger_to_dict_gives_flask_apschedulers_fields() -> None:
    interval = IntervalTrigger(days=8, hours=1, seconds=5, timezone=UTC)
    assert trigger_to_dict(interval) == {
        "trigger": "interval",
        "start_date": interval.start_date.isoformat(),
        "weeks": 1,
        "days": 1,
        "hours": 1,
        "seconds": 5,
    }
    cron = trigger_to_dict(CronTrigger(minute="*/5", hour="1-3", timezone=UTC))
    assert cron == {"trigger": "cron", "hour": "1-3", "minute": "*/5"}
    run_date = datetime(2030, 1, 1, tzinfo=UTC)
    assert trigger_to_dict(DateTrigger(run_date)) == {
        "trigger": "date",
        "run_date": "2030-01-01T00:00:00+00:00",
    }


def test_job_to_dict_shows_the_schedule_of_a_scheduled_job_only() -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    pending = scheduler.add_job(FUNC, "interval", seconds=30, id="tick", name="tick", args=[1, 2])
    data = job_to_dict(pending)  # not started: pending, no next run time yet
    assert data["id"] == "tick" and data["func"] == FUNC
    assert data["args"] == [1, 2] and data["kwargs"] == {} and data["seconds"] == 30
    assert "next_run_time" not in data and "max_instances" not in data
    scheduler.start(paused=True)
    try:
        started = job_to_dict(scheduler.get_job("tick"))
        assert started["next_run_time"] is not None
        assert started["max_instances"] == 1 and started["misfire_grace_time"] == 1
    finally:
        scheduler.shutdown(wait=False)
