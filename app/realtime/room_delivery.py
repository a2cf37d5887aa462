"""Exactly-once, in-order delivery of one room's traffic to one connection.

A joiner's first frames of a room are its state (`presence_state`, then `history` up to a log
position: docs/websockets.md). What the room sends meanwhile is held, then passed on after the
state, in order, without the log's messages the history already had. From then on each log
message (numbered `(epoch, offset)`: app.realtime.rooms) is sent once: one at or before the
last position sent is a duplicate (a catch-up after the broker resubscribed, or a message that
came both from the log and live). Frames without a position (presence, private messages) are
held during the join like the rest and otherwise always sent.
"""

from __future__ import annotations

LogPosition = tuple[str, int]  # (epoch, offset) in a room's log


class RoomDelivery:
    """One connection's delivery state in one room: the frames held while it joins (None once
    it has been welcomed) and the log position of the last message it was sent."""

    __slots__ = ("_held", "_last")

    def __init__(self) -> None:
        self._held: list[tuple[str, LogPosition | None]] | None = []
        self._last: LogPosition | None = None

    @property
    def joining(self) -> bool:
        return self._held is not None

    def admit(self, position: LogPosition) -> bool:
        """Whether a log message at `position` is new (a later offset, or another epoch: the
        log was lost and begun again); if so it becomes the last sent."""
        last = self._last
        if last is not None and last[0] == position[0] and position[1] <= last[1]:
            return False
        self._last = position
        return True

    def take(self, text: str, position: LogPosition | None) -> bool:
        """Whether `text` (a log message at `position`, or None) goes out now: False while
        joining (it is held) or when the log message was already sent."""
        if self._held is not None:
            self._held.append((text, position))
            return False
        return position is None or self.admit(position)

    def welcome(self, position: LogPosition | None) -> list[str]:
        """The joiner was sent the room's log up to `position` (None: an empty log): the held
        frames to send now, in order, without the log's messages it already has; afterwards
        frames go out as they come (`take`)."""
        if position is not None:
            self.admit(position)
        held, self._held = self._held or [], None
        return [text for text, at in held if at is None or self.admit(at)]
