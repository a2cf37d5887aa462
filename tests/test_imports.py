"""What importing the models and the settings costs: Alembic and the CLI's database commands
import them, and must not pay for Quart, the hub or the scheduler (issue 21). Measured in a
fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.server import PROJECT_ROOT

PROBE = """
import json, sys, time
started = time.perf_counter()
import app.models, app.settings
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "modules": sorted(sys.modules)}))
"""


def run_probe(code: str) -> object:
    """The JSON that `code` prints, run in a fresh interpreter from the project's root."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_models_and_settings_import_without_quart_the_hub_or_the_scheduler() -> None:
    measured = run_probe(PROBE)
    assert isinstance(measured, dict)
    modules = set(measured["modules"])
    ours = sorted(name for name in modules if name == "app" or name.startswith("app."))
    assert ours == ["app", "app.models", "app.settings", "app.validation"], ours
    for heavy in ("quart", "hypercorn", "redis", "apscheduler", "app.realtime.hub"):
        assert heavy not in modules, heavy
    print(
        f"import app.models, app.settings: {measured['seconds'] * 1000:.0f} ms, {len(modules)} modules"
    )


SUPERVISOR_PROBE = """
import json, sys
import app.cli, app.supervisor, app.hypercorn_patches, app.overrides, app.request_log
import app.redis_client
print(json.dumps(sorted(sys.modules)))
"""


def test_the_supervisor_and_the_cli_import_neither_sqlalchemy_nor_quart() -> None:
    """What `python -m app serve` imports in its supervisor, before it starts the workers
    (app.cli's serve, its checks, its logging and the Redis topology check): every start and
    every `python -m app` command paid for SQLAlchemy and Quart (0.6 s of CPU) it never used.
    The workers import the app themselves."""
    imported = run_probe(SUPERVISOR_PROBE)
    assert isinstance(imported, list)
    modules = set(imported)
    for heavy in ("sqlalchemy", "quart", "app.db", "app.factory", "argon2", "apscheduler"):
        assert heavy not in modules, heavy
