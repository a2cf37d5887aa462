"""tests/report_guard.py: a failure whose source pytest cannot read (CPython 3.11.7's
`ast.parse` SystemError, gh-106905) fails its test and the run goes on."""

from __future__ import annotations

import pytest

FAILING_TESTS = """
import ast


def test_fails_while_ast_parse_is_broken(monkeypatch):
    def broken(*args, **kwargs):
        raise SystemError("AST constructor recursion depth mismatch (before=147, after=199)")

    monkeypatch.setattr(ast, "parse", broken)
    assert 1 == 2, "the test's own message"


def test_after_it():
    pass
"""


def test_the_failure_is_reported_and_the_run_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING_TESTS)
    result = pytester.runpytest_subprocess("-p", "tests.report_guard", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*could not render this failure*", "*the test's own message*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_without_the_guard_the_whole_run_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert "INTERNALERROR" in result.stdout.str() + result.stderr.str()
