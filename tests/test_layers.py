"""The layers of app (pyproject.toml's import-linter contract, docs/design.md "Layers"): every
module is in one, and no import circle exists between modules, type-only imports included.
`make lint` runs the contract itself (`lint-imports`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
# Packages whose modules sit in different layers; their `__init__` holds no imports of app's.
SPLIT_PACKAGES = {"app", "app.ws"}


def _layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [
        {name.strip() for name in layer.replace("|", ":").split(":") if name.strip()}
        for layer in contract["layers"]
    ]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("app", include_external_packages=False, cache_dir=None)


def _circles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Each direct import `a -> b` where `b` also reaches `a`: an edge of an import circle."""
    return sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )


def test_every_module_is_in_a_layer() -> None:
    named = set().union(*_layers())
    graph = _graph()
    outside = sorted(
        module
        for module in graph.modules
        if module not in SPLIT_PACKAGES
        and not any(module == name or module.startswith(name + ".") for name in named)
    )
    assert not outside, f"modules in no layer of pyproject.toml's contract: {outside}"
    assert all(module in graph.modules for module in named), "a layer names no module"


def test_split_packages_import_nothing_of_their_own_at_import_time() -> None:
    graph = _graph()
    for package in SPLIT_PACKAGES - {"app"}:  # app's __init__ imports lazily (`__getattr__`)
        assert graph.find_modules_directly_imported_by(package) == set(), package


def test_no_import_circle_type_only_imports_included() -> None:
    circles = _circles(_graph())
    assert circles == [], f"imports inside a circle: {circles}"
