"""Files the service ships beside its code: the page templates, the static files (the JS
client), the Alembic migrations and the default Hypercorn settings.

A wheel carries them in `app/_bundle/` (pyproject.toml maps the top-level `templates/`, `static/`,
`alembic/`, `alembic.ini` and `hypercorn.toml` there at build time), so an installed service
needs no checkout. From a checkout (an editable install, `make run`) they are the top-level
folders themselves. Both are found through `importlib.resources`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

BUNDLE = "_bundle"


def resource_root() -> Path:
    """The folder holding `templates/`, `alembic/`, `alembic.ini` and `hypercorn.toml`.

    Raises:
        FileNotFoundError: neither the wheel's bundle nor a checkout holds them.
    """
    package = files("app")
    bundled = package / BUNDLE
    # A wheel is installed unpacked, so its resources are real files (Alembic and Hypercorn
    # open them by path).
    root = Path(str(bundled)) if bundled.is_dir() else Path(str(package)).resolve().parent
    if not (root / "hypercorn.toml").is_file():
        raise FileNotFoundError(f"the service's resources are missing under {root}")
    return root


def resource_path(name: str) -> Path:
    """The path of one shipped resource, e.g. `resource_path("templates")`."""
    return resource_root() / name
