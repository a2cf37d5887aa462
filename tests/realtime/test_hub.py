"""The hub's outgoing filters (app/realtime/hub.py `intercepts`, as Phoenix's `intercept` and
`handle_out`), and the room service's one: a presence diff without the receiver's own join."""

from __future__ import annotations

import json
from typing import Any

from app.presence import PresenceRecorder
from app.presence.memory_store import MemoryPresenceStore
from app.realtime.broker import InProcessBroker
from app.realtime.hub import Hub
from app.realtime.room_service import PRESENCE_DIFF, presence_diff, without_own_join

ROOM = "lobby"


class Receiver:
    """What the hub hands frames to: a name, and `offer` (app.realtime.connection)."""

    def __init__(self, name: str) -> None:
        self.id = name
        self.name = name
        self.frames: list[dict[str, Any]] = []

    def offer(self, room: str | None, text: str, *_: object) -> int:
        self.frames.append(json.loads(text))
        return 1


def entry(name: str) -> dict[str, Any]:
    return {"name": name, "user_id": None}


def test_a_receiver_does_not_see_its_own_join() -> None:
    diff = presence_diff(ROOM, [entry("ann"), entry("bob")], [])
    bob, eve = Receiver("bob"), Receiver("eve")
    assert without_own_join(diff, eve) is diff  # unchanged: encoded once for all
    assert without_own_join(diff, bob) == {**diff, "joins": [entry("ann")]}
    assert without_own_join(presence_diff(ROOM, [entry("bob")], []), bob) is None
    only_bob_and_a_leave = presence_diff(ROOM, [entry("bob")], [entry("cy")])
    assert without_own_join(only_bob_and_a_leave, bob) == {
        **only_bob_and_a_leave,
        "joins": [],
    }


async def test_each_receiver_gets_the_copy_its_intercept_makes() -> None:
    hub = Hub(InProcessBroker(), PresenceRecorder(MemoryPresenceStore(window_minutes=5)))
    hub.intercepts[PRESENCE_DIFF] = without_own_join
    await hub.start()
    ann, bob = Receiver("ann"), Receiver("bob")
    hub.rooms[ROOM] = {ann, bob}
    diff = presence_diff(ROOM, [entry("bob")], [])
    await hub.publish({"kind": "room", "room": ROOM}, diff, intercept=PRESENCE_DIFF)
    assert ann.frames == [diff]
    assert bob.frames == []
    # Without the intercept (or one this worker does not know), every receiver gets the frame.
    await hub.publish({"kind": "room", "room": ROOM}, diff)
    await hub.publish({"kind": "room", "room": ROOM}, diff, intercept="unknown")
    assert bob.frames == [diff, diff]
    # The frame's event alone no longer decides: a frame of another event is filtered too.
    hub.intercepts["only ann"] = lambda frame, receiver: frame if receiver.name == "ann" else None
    await hub.publish({"kind": "room", "room": ROOM}, {"event": "x"}, intercept="only ann")
    assert ann.frames[-1] == {"event": "x"} and len(bob.frames) == 2
