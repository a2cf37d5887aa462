"""A failure pytest cannot render still fails only its test, never the whole run.

CPython 3.11.7 (this machine's and CI's interpreter) can raise `SystemError: AST constructor
recursion depth mismatch` from `ast.parse` while pytest reads a failing test's source for its
report, when another thread parses at the same moment: 3.11 keeps the AST constructor's
recursion depth per interpreter, not per thread (CPython gh-106905, fixed in 3.11.8). Under
pytest-xdist that error ended the session as an INTERNALERROR: two suites under load lost
their summaries and about 130 tests never ran.
Here the test is reported failed with its own error and plain file:line frames instead.
"""

from __future__ import annotations

import traceback
from collections.abc import Generator

import pytest


def plain_failure(call: pytest.CallInfo[None], error: SystemError) -> str:
    """The test's error, its type and message, and its frames as file:line (no source read)."""
    lines = [f"(pytest could not render this failure: {error})"]
    if call.excinfo is not None:
        failure = call.excinfo.value
        for frame in traceback.extract_tb(failure.__traceback__):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        lines.append(f"{type(failure).__name__}: {failure}")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    try:
        return (yield)
    except SystemError as error:
        return pytest.TestReport(
            nodeid=item.nodeid,
            location=item.location,
            keywords=dict.fromkeys(item.keywords, 1),
            outcome="failed",
            longrepr=plain_failure(call, error),
            when=call.when,
            sections=[],
            duration=call.duration,
            start=call.start,
            stop=call.stop,
            user_properties=item.user_properties,
        )
