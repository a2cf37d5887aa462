"""The changes app/hypercorn_patches.py makes to Hypercorn's and wsproto's websocket handling still apply
to the installed versions: these fail loudly when an upgrade moves the internals they touch."""

from __future__ import annotations

import inspect

import h11
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import ws_stream
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection
from wsproto.frame_protocol import CloseReason

from app.hypercorn_patches import patch_hypercorn


def masked_text_frame(payload: bytes) -> bytes:
    """A client's (masked) text frame, built by hand so it may hold invalid UTF-8."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_a_text_frame_that_is_not_utf8_is_answered_with_close_1007() -> None:
    patch_hypercorn()
    server = Connection(ConnectionType.SERVER)
    server.receive_data(masked_text_frame(b"\xff\xfe"))
    events = list(server.events())
    assert events == [
        CloseConnection(code=CloseReason.INVALID_FRAME_PAYLOAD_DATA, reason=events[0].reason)
    ]
    # Hypercorn answers a CloseConnection only in this state (ws_stream._handle_events).
    assert server.state is ConnectionState.REMOTE_CLOSING
    reply = server.send(events[0].response())
    assert reply[:2] == b"\x88" + bytes([len(reply) - 2]) and reply[2:4] == (1007).to_bytes(2)
    assert "ConnectionState.REMOTE_CLOSING" in inspect.getsource(ws_stream.WSStream._handle_events)


def test_hypercorn_internals_the_patches_use_are_there() -> None:
    patch_hypercorn()
    assert getattr(hypercorn_h11.H11Protocol._maybe_recycle, "closes_ended_websockets", False)
    assert callable(hypercorn_h11.H11Protocol._close_stream)
    assert hasattr(h11, "SWITCHED_PROTOCOL")
    from hypercorn.asyncio.tcp_server import TCPServer

    assert getattr(TCPServer._close, "bounded", False)
    # What bound_connection_close relies on: the connection's writer, and the worker's
    # terminated event it watches.
    source = inspect.getsource(TCPServer._close.__wrapped__)
    assert "self.writer.close()" in source and "wait_closed()" in source
    assert "self.context.terminated.wait()" in inspect.getsource(TCPServer._idle_timeout)
    # permessage-deflate is negotiated through this name (limit_websocket_compression).
    assert ws_stream.PerMessageDeflate.keywords == {
        "server_no_context_takeover": True,
        "client_no_context_takeover": True,
    }
    # A websocket's messages reach the app through spawn_app's bounded queue (app/realtime/asgi.py).
    from hypercorn.asyncio.task_group import TaskGroup

    assert "max_app_queue_size" in inspect.getsource(TaskGroup.spawn_app)


BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


def test_websocket_compression_is_declined_unless_turned_on() -> None:
    from wsproto.handshake import server_extensions_handshake

    from app.hypercorn_patches import set_websocket_compression

    try:
        set_websocket_compression(False)
        assert server_extensions_handshake([BROWSER_OFFER], [ws_stream.PerMessageDeflate()]) is None
        set_websocket_compression(True)
        accepted = server_extensions_handshake([BROWSER_OFFER], [ws_stream.PerMessageDeflate()])
        assert accepted is not None
        assert b"server_no_context_takeover" in accepted
        assert b"client_no_context_takeover" in accepted
    finally:
        patch_hypercorn()
