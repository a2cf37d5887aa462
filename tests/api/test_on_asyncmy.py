"""The REST contract on MariaDB through asyncmy, the optional faster driver
(DATABASE_URL=mysql+asyncmy://...): the user, blog and tag route tests run again here, with
this module's `database_url`."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url

from tests.api.test_blogs import *  # noqa: F403 (collected again, on asyncmy)
from tests.api.test_tags import *  # noqa: F403
from tests.api.test_users import *  # noqa: F403
from tests.conftest import _empty_all_tables


@pytest.fixture
def database_url(mysql_url: str) -> str:
    url = make_url(mysql_url).set(drivername="mysql+asyncmy").render_as_string(False)
    asyncio.run(_empty_all_tables(url))
    return url


def test_this_module_runs_on_asyncmy(settings) -> None:
    assert settings.database_url.startswith("mysql+asyncmy://")
