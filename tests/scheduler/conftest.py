from __future__ import annotations

import pytest

from tests.auth_helpers import basic, make_user

ADMIN = basic("root", "password-1")
USER = basic("alice", "password-1")


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path, sqlite_template) -> str:
    """Scheduler logic does not depend on the SQL backend (the end-to-end test uses MariaDB)."""
    import shutil

    shutil.copyfile(sqlite_template, tmp_path / "app.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
async def app(serve_app):
    async with serve_app(scheduler_enabled=True, scheduler_builtin_jobs=False) as app:
        await make_user(app, "root", role=1)
        await make_user(app, "alice")
        yield app
