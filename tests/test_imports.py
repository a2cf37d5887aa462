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


def test_models_and_settings_import_without_quart_the_hub_or_the_scheduler() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    measured = json.loads(done.stdout)
    modules = set(measured["modules"])
    ours = sorted(name for name in modules if name == "app" or name.startswith("app."))
    assert ours == ["app", "app.models", "app.settings", "app.validation"], ours
    for heavy in ("quart", "hypercorn", "redis", "apscheduler", "app.realtime.hub"):
        assert heavy not in modules, heavy
    print(
        f"import app.models, app.settings: {measured['seconds'] * 1000:.0f} ms, {len(modules)} modules"
    )
