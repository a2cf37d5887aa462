"""The limits every websocket of a worker reads under (`ReadRules`) and what they make of one
frame (`FrameVerdict`); `Connection.handle_frame` (app.realtime.connection) acts on the verdict."""

from __future__ import annotations

import enum
import time
from typing import Protocol

from limits import RateLimitItem


class Counted(Protocol):
    """What the rules know of a connection: its id (`Connection.id`)."""

    @property
    def id(self) -> str: ...


class FrameVerdict(enum.Enum):
    """What `ReadRules.check` makes of one frame."""

    ALLOW = "allow"
    RATE_LIMITED = "rate_limited"  # dropped, answered with an error frame
    FLOOD = "flood"  # too many strikes in a row: close with 1008


class ReadRules:
    """Limits every connection of a worker reads under: size, idle time, and a rate limit.

    Past `rate` frames in its window (a fixed window that starts at a connection's first frame,
    as `limits`' fixed-window strategy counts) a client gets an error frame per extra frame;
    after `flood_strikes` such frames in a row it is closed with 1008.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int,
        idle_timeout: float,
        rate: RateLimitItem,
        flood_strikes: int,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.rate = rate
        self.flood_strikes = flood_strikes
        # Counted here, per connection, not in `limits`' MemoryStorage: its expiry runs in a
        # thread it starts anew every 10 ms while frames arrive, scanning every key under a
        # lock, against the event loop for the GIL (py-spy on a fan-out worker).
        self._window_seconds = float(rate.get_expiry())
        self._windows: dict[str, tuple[float, int]] = {}  # connection id: (window start, frames)
        self._strikes: dict[str, int] = {}

    def check(self, connection: Counted) -> FrameVerdict:
        """Count one frame from `connection` and judge it; acts on nothing (the connection
        answers the verdict: `Connection.handle_frame`).

        Returns `ALLOW` within `rate`; past it `RATE_LIMITED` (the frame is dropped), or
        `FLOOD` once `flood_strikes` frames in a row were over the rate.
        """
        now = time.monotonic()
        started, frames = self._windows.get(connection.id, (now, 0))
        if now - started >= self._window_seconds:
            started, frames = now, 0
        self._windows[connection.id] = (started, frames + 1)
        if frames < self.rate.amount:
            self._strikes.pop(connection.id, None)
            return FrameVerdict.ALLOW
        strikes = self._strikes.get(connection.id, 0) + 1
        self._strikes[connection.id] = strikes
        return FrameVerdict.FLOOD if strikes >= self.flood_strikes else FrameVerdict.RATE_LIMITED

    def forget(self, connection: Counted) -> None:
        """Drop `connection`'s window and strikes (it has closed)."""
        self._windows.pop(connection.id, None)
        self._strikes.pop(connection.id, None)
