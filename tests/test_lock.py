"""The lock files pin every dependency pyproject.toml declares, at a version it allows, and
every distribution the code imports is declared (so `make lock` cannot silently drop one)."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.e2e.server import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def pins(lock_name: str) -> dict[str, str]:
    found = {}
    for line in (PROJECT_ROOT / lock_name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split(";")[0].split("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def check(requirements: list[str], locked: dict[str, str], extra: str = "") -> list[str]:
    problems = []
    environment = {**default_environment(), "extra": extra}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} breaks {requirement.specifier}")
    return problems


def test_requirements_lock_pins_the_runtime_dependencies() -> None:
    assert check(PYPROJECT["dependencies"], pins("requirements.lock")) == []


def test_requirements_dev_lock_pins_runtime_and_dev_dependencies() -> None:
    locked = pins("requirements-dev.lock")
    dev = PYPROJECT["optional-dependencies"]["dev"]
    assert check(PYPROJECT["dependencies"] + dev, locked, extra="dev") == []
    runtime = pins("requirements.lock")
    assert {name: locked[name] for name in runtime} == runtime, "the two locks disagree"


def test_every_imported_distribution_is_declared() -> None:
    declared = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["dependencies"]}
    distributions = packages_distributions()
    imported: set[str] = set()
    for path in (PROJECT_ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    undeclared = {
        f"{module} ({', '.join(distributions[module])})"
        for module in imported - set(sys.stdlib_module_names) - {"app"}
        if not {canonicalize_name(name) for name in distributions.get(module, [module])} & declared
    }
    assert undeclared == set()


def test_every_runtime_dependency_has_an_upper_bound() -> None:
    """`make lock UPGRADE=--upgrade` cannot take a release nobody tested (issue 34)."""
    unbounded = [
        text
        for text in PYPROJECT["dependencies"]
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in Requirement(text).specifier)
    ]
    assert unbounded == []
