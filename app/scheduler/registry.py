"""Which functions may be scheduled: no remote code execution through `func`.

A job's `func` ("module:callable") must be in a job module: the built-in `app.scheduler.jobs`,
or one listed in `SCHEDULER_JOB_MODULES`. There it must be a public module-level function, or
one decorated with `@job_function` (it is marked, not listed: no process-wide registry).
Anything else is refused (HTTP 400), whatever else the process has imported: the answer does not
depend on import order. A job module is imported when a job names it; no other module is.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

MARK = "__schedulable__"


def reference(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def job_function(function: F) -> F:
    """Allow `function` to be scheduled, as "module:qualname"."""
    setattr(function, MARK, True)
    return function


class ForbiddenJobFunction(ValueError):
    """`func` names something that is not a registered job function."""


BUILT_IN_JOB_MODULES = ("app.scheduler.jobs",)


def check_func(func: object, allowed_modules: list[str]) -> str:
    """The validated "module:callable" reference, its module one of `BUILT_IN_JOB_MODULES` or
    `allowed_modules` (SCHEDULER_JOB_MODULES). Raises `ForbiddenJobFunction` naming the rule."""
    if not isinstance(func, str) or func.count(":") != 1:
        raise ForbiddenJobFunction('func: must be a "module:function" reference')
    module_name, _, attribute = func.partition(":")
    listed = module_name in allowed_modules or module_name in BUILT_IN_JOB_MODULES
    module = None
    if listed:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        if target is None or not part.isidentifier():
            target = None
            break
        target = getattr(target, part, None)
    if callable(target) and (
        getattr(target, MARK, False)
        or (listed and "." not in attribute and not attribute.startswith("_"))
    ):
        return func
    raise ForbiddenJobFunction(
        f"func: {func!r} is not a registered job function: list its module in "
        "SCHEDULER_JOB_MODULES (there, public module-level functions and @job_function ones "
        "may be scheduled)"
    )
