"""The MySQL databases the benchmarks create on the given server, and drop again."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def sync_url(url: str) -> str:
    """The PyMySQL form of a MySQL URL (the seeding and the Flask original use PyMySQL)."""
    return make_url(url).set(drivername="mysql+pymysql").render_as_string(hide_password=False)


def _on_server(url: str, statement: str) -> None:
    """Run `statement` (with `{name}`, the database of `url`) on the server of `url`."""
    parsed = make_url(sync_url(url))
    engine = create_engine(parsed.set(database=""))
    with engine.begin() as connection:
        connection.execute(text(statement.format(name=parsed.database)))
    engine.dispose()


def create_database(url: str) -> None:
    _on_server(url, "CREATE DATABASE IF NOT EXISTS `{name}`")


def drop_database(url: str) -> None:
    _on_server(url, "DROP DATABASE IF EXISTS `{name}`")
