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
    (app.cli's serve, its checks, its logging and the Redis topology check): every
    `python -m app` command paid for SQLAlchemy and Quart (0.6 s of CPU) it never used. Only
    `serve` imports them, once, to fork its workers with them (`WORKER_PRELOAD`); and no
    metric is made before the workers exist (app/metric_files.py)."""
    imported = run_probe(SUPERVISOR_PROBE)
    assert isinstance(imported, list)
    modules = set(imported)
    for heavy in ("sqlalchemy", "quart", "app.db", "app.factory", "argon2", "apscheduler"):
        assert heavy not in modules, heavy
    assert "app.metrics" not in modules


FORK_PROBE = """
import json, sys, threading
import app.cli, app.supervisor, app.redis_client, app.request_log
from app.db import upgrade_to_head
from app.commands import load_settings
from app.supervisor import worker_context
upgrade_to_head(load_settings())  # what `serve --migrate` runs first
chosen = {"clean": worker_context().get_start_method()}
preloaded = set(sys.modules)
import app.asgi
app.asgi.app  # the app itself, as a worker makes it
chosen["third_party_left"] = sorted(
    {name.split(".")[0] for name in set(sys.modules) - preloaded} - {"app"}
)
chosen["with_metrics"] = worker_context().get_start_method()
del sys.modules["app.metrics"]
threading.Thread(target=threading.Event().wait, daemon=True).start()
chosen["with_a_thread"] = worker_context().get_start_method()
print(json.dumps(chosen))
"""


def test_workers_are_forked_after_the_preload_unless_a_fork_would_be_unsafe(
    monkeypatch, tmp_path
) -> None:
    """`app.supervisor.worker_context`: a clean supervisor forks its workers once it has
    imported `WORKER_PRELOAD`, which leaves a worker little third-party code to import; it
    spawns them when app.metrics is imported or another thread runs. `serve --migrate` forks
    too: the migration makes no metric and leaves no thread."""
    for name, value in {
        "SECRET_KEY": "k" * 40,
        "APP_ENV": "production",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
    }.items():
        monkeypatch.setenv(name, value)
    chosen = run_probe(FORK_PROBE)
    assert isinstance(chosen, dict)
    assert chosen["clean"] == "fork"
    # What is left for a forked worker: small packages (WORKER_PRELOAD keeps up with the app).
    assert set(chosen["third_party_left"]) <= {"packaging", "swagger_ui_bundle"}, chosen
    assert chosen["with_metrics"] == "spawn"
    assert chosen["with_a_thread"] == "spawn"
