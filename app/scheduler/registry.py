"""Which functions may be scheduled: no remote code execution through `func`.

A job's `func` ("module:callable") must be a function decorated with `@job_function` (it is
marked, not listed: no process-wide registry), or a public function of a module listed in
`SCHEDULER_JOB_MODULES`. Anything else is refused (HTTP 400). A module is imported only when it
is listed there; a decorated function's module is already imported (the decorator ran).
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


def check_func(func: object, allowed_modules: list[str]) -> str:
    """The validated "module:callable" reference. Raises `ForbiddenJobFunction` naming the rule."""
    if not isinstance(func, str) or func.count(":") != 1:
        raise ForbiddenJobFunction('func: must be a "module:function" reference')
    module_name, _, attribute = func.partition(":")
    listed = module_name in allowed_modules
    module = sys.modules.get(module_name)
    if module is None and listed:
        module = importlib.import_module(module_name)
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
        f"func: {func!r} is not a registered job function (decorate it with @job_function, or "
        "list its module in SCHEDULER_JOB_MODULES)"
    )
