"""The test runs' naming of shared-server resources (tests/resources.py)."""

from __future__ import annotations

from tests.resources import RUN_ID, databases_to_drop, mysql_database_url


def test_database_names_carry_the_run_id() -> None:
    assert mysql_database_url("e2e").endswith(f"/qf_e2e_{RUN_ID}")


def test_only_own_databases_at_the_end_and_dead_runs_at_the_start() -> None:
    existing = [
        f"qf_test_{RUN_ID}",
        "qf_test_0badcafe",  # a run that is alive
        "qf_e2e_deadbeef",  # a run that died
        "qf_test",  # not a run's database
        "production",
    ]
    live = {RUN_ID, "0badcafe"}
    assert databases_to_drop(existing, live=live, at_end=True) == [f"qf_test_{RUN_ID}"]
    assert databases_to_drop(existing, live=live, at_end=False) == ["qf_e2e_deadbeef"]
