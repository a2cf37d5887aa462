"""app/overrides.py: each override of a package's internals supports the installed release,
refuses the first release past its bound, and agrees with pyproject.toml's bound and with the
version checks of the modules that hold it."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from app import hypercorn_patches, overrides, uvicorn_server
from app.overrides import OVERRIDES, UnsupportedDependency, check_overrides, unsupported
from app.scheduler import guard
from tests.e2e.server import PROJECT_ROOT

DECLARED = {
    canonicalize_name(Requirement(text).name): Requirement(text).specifier
    for text in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
}
IDS = [override.package for override in OVERRIDES]


def first_unsupported(override: overrides.Override) -> str:
    """The release named by the override's upper bound (`<X`: X itself)."""
    return next(spec.version for spec in SpecifierSet(override.supported) if spec.operator == "<")


@pytest.mark.parametrize("override", OVERRIDES, ids=IDS)
def test_the_installed_release_is_supported(override) -> None:
    assert override.supports(version(override.package))


@pytest.mark.parametrize("override", OVERRIDES, ids=IDS)
def test_the_next_untested_release_is_refused(override, monkeypatch) -> None:
    release = first_unsupported(override)
    assert not override.supports(release)
    monkeypatch.setattr(
        overrides,
        "version",
        lambda package: release if package == override.package else version(package),
    )
    assert [problem.split()[0] for problem in unsupported()] == [override.package]
    with pytest.raises(UnsupportedDependency, match=override.package):
        check_overrides()


@pytest.mark.parametrize("override", OVERRIDES, ids=IDS)
def test_pyproject_bounds_the_package_as_the_override_supports_it(override) -> None:
    assert DECLARED[canonicalize_name(override.package)] == SpecifierSet(override.supported)


@pytest.mark.parametrize(
    ("packages", "check", "error"),
    [
        (hypercorn_patches.PATCHED_PACKAGES, hypercorn_patches.check_versions, RuntimeError),
        (uvicorn_server.SERVER_PACKAGES, uvicorn_server.check_versions, RuntimeError),
        (("apscheduler",), guard.bound_catching_up, RuntimeError),
    ],
    ids=["hypercorn_patches", "uvicorn_server", "guard"],
)
def test_the_modules_own_version_checks_use_this_list(packages, check, error, monkeypatch) -> None:
    by_package = {override.package: override for override in OVERRIDES}
    for package in packages:
        release = first_unsupported(by_package[package])
        monkeypatch.setattr(
            overrides,
            "version",
            lambda name, p=package, r=release: r if name == p else version(name),
        )
        with pytest.raises(error, match=f"{package} {release}"):
            check()


def test_nothing_installed_is_unsupported() -> None:
    assert unsupported() == []
    check_overrides()
