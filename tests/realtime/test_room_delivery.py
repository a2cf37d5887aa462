"""One connection's delivery in one room (app/realtime/room_delivery.py): what a joiner is
sent after the room's state, and each log message once."""

from __future__ import annotations

from app.realtime.room_delivery import RoomDelivery

EPOCH = "e1"


def test_frames_during_the_join_are_held_then_sent_in_order_without_what_the_history_had():
    delivery = RoomDelivery()
    assert delivery.joining
    assert not delivery.take("m3", (EPOCH, 3))  # in the history the joiner reads
    assert not delivery.take("presence", None)
    assert not delivery.take("m4", (EPOCH, 4))  # published after the log was read
    assert delivery.welcome((EPOCH, 3)) == ["presence", "m4"]
    assert not delivery.joining


def test_after_the_welcome_a_log_message_is_sent_once():
    delivery = RoomDelivery()
    assert delivery.welcome((EPOCH, 4)) == []
    assert not delivery.take("m4", (EPOCH, 4))  # came from the log already
    assert delivery.take("m5", (EPOCH, 5))
    assert not delivery.take("m5", (EPOCH, 5))  # again, from a catch-up
    assert delivery.take("private", None)  # no position: always sent
    assert delivery.take("m5 of a new log", ("e2", 1))  # the log was lost and begun again


def test_a_held_duplicate_is_sent_once():
    delivery = RoomDelivery()
    delivery.take("m1", (EPOCH, 1))
    delivery.take("m1", (EPOCH, 1))
    assert delivery.welcome(None) == ["m1"]


def test_admit_moves_the_last_position_forward_only():
    delivery = RoomDelivery()
    delivery.welcome(None)
    assert delivery.admit((EPOCH, 7))
    assert not delivery.admit((EPOCH, 6))
    assert not delivery.admit((EPOCH, 7))
    assert delivery.admit((EPOCH, 8))
