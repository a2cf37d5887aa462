from __future__ import annotations

import pytest


class FakeClock:
    """A settable clock in epoch seconds, for moving time in presence tests."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:  # a minute boundary
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
