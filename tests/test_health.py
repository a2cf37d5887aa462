"""Liveness and readiness probes."""

from __future__ import annotations

import pytest

from app.factory import create_app
from app.state import app_state
from tests.conftest import make_settings


async def test_liveness(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and await response.get_json() == {"status": "ok"}


async def test_readiness_with_a_working_database(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok", "database": "up", "redis": "off"}


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
async def test_readiness_is_503_when_no_connection_can_be_had(database_url) -> None:
    app = create_app(
        make_settings(database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2)
    )
    async with app.test_app():
        async with app_state(app).database.engine.connect():
            response = await app.test_client().get("/readyz")
        assert response.status_code == 503
        assert await response.get_json() == {
            "status": "unavailable",
            "database": "down",
            "redis": "off",
        }
        assert (await app.test_client().get("/readyz")).status_code == 200
