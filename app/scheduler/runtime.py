"""What a running job may use: the app of the worker that runs it (jobs run outside requests)."""

from __future__ import annotations

from quart import Quart

_app: Quart | None = None


def set_app(app: Quart | None) -> None:
    global _app
    _app = app


def app() -> Quart:
    """The serving app. Raises `RuntimeError` when no scheduler is running in this process."""
    if _app is None:
        raise RuntimeError("no scheduler is running in this process")
    return _app
