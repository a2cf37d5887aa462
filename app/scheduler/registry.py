"""Which functions may be scheduled: no remote code execution through `func`.

A job's `func` ("module:callable") must be a function decorated with `@job_function`, or a public
function of a module listed in `SCHEDULER_JOB_MODULES`. Anything else is refused (HTTP 400).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

REGISTERED: set[str] = set()


def reference(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def job_function(function: F) -> F:
    """Allow `function` to be scheduled, as "module:qualname"."""
    REGISTERED.add(reference(function))
    return function


class ForbiddenJobFunction(ValueError):
    """`func` names something that is not a registered job function."""


def check_func(func: object, allowed_modules: list[str]) -> str:
    """The validated "module:callable" reference. Raises `ForbiddenJobFunction` naming the rule."""
    if not isinstance(func, str) or func.count(":") != 1:
        raise ForbiddenJobFunction('func: must be a "module:function" reference')
    if func in REGISTERED:
        return func
    module_name, _, attribute = func.partition(":")
    if (
        module_name in allowed_modules
        and attribute.isidentifier()
        and not attribute.startswith("_")
    ):
        module = importlib.import_module(module_name)
        if callable(getattr(module, attribute, None)):
            return func
    raise ForbiddenJobFunction(
        f"func: {func!r} is not a registered job function (decorate it with @job_function, or "
        "list its module in SCHEDULER_JOB_MODULES)"
    )
