"""A websocket client that stops reading: real RFC 6455 framing (websockets' sans-I/O client
protocol) over a plain socket with a tiny receive buffer, so the server's writes back up."""

from __future__ import annotations

import socket
import struct
import time

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri


class StalledClient:
    """Arguments:
    url: the websocket's ws:// address.
    receive_buffer: the socket's receive buffer in bytes (small: the server's writes back up).
    """

    def __init__(self, url: str, receive_buffer: int = 4096) -> None:
        self.close_reason = ""
        self._pending: list[object] = []  # received, not yet handed out (a read takes one)
        uri = parse_uri(url)
        self.protocol = ClientProtocol(uri, max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect((uri.host, uri.port))
        self.sock.settimeout(10)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self._opened():
            self.protocol.receive_data(self.sock.recv(4096))
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc

    def _opened(self) -> bool:
        return self.protocol.state.name == "OPEN"

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._flush()

    def send_burst(self, texts: list[str]) -> None:
        """Send every frame in one write, as a flooding client does."""
        for text in texts:
            self.protocol.send_text(text.encode())
        self._flush()

    def send_raw_text(self, payload: bytes) -> None:
        """A text frame with `payload` as it is: it need not be UTF-8 (RFC 6455 says it must)."""
        self.protocol.send_frame(Frame(Opcode.TEXT, payload))
        self._flush()

    def abort(self) -> None:
        """Drop the connection with a TCP reset, no close frame."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def _events(self, timeout: float):
        """The server's frames as they arrive, until `timeout` seconds pass or it hangs up."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while True:
            # Frames parsed from one read and not yet handed out wait for the next read_text.
            self._pending.extend(self.protocol.events_received())
            while self._pending:
                yield self._pending.pop(0)
            if time.monotonic() >= deadline:
                return
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            self.protocol.receive_data(data)
        self._pending.extend(self.protocol.events_received())
        while self._pending:
            yield self._pending.pop(0)

    def read_text(self, timeout: float = 10) -> str:
        """The next text frame from the server."""
        for event in self._events(timeout):
            if getattr(event, "opcode", None) == Opcode.TEXT:
                return event.data.decode()
        raise AssertionError("no text frame from the server")

    def read_until_closed(self, timeout: float = 30) -> int | None:
        """Drain everything the server sent and return its close code (None if it never
        closed); the close reason is kept in `close_reason`."""
        for event in self._events(timeout):
            if getattr(event, "opcode", None) == Opcode.CLOSE:
                close = Close.parse(event.data)
                self.close_reason = close.reason
                return close.code
        if self.protocol.close_rcvd:
            self.close_reason = self.protocol.close_rcvd.reason
            return self.protocol.close_rcvd.code
        return None

    def close(self) -> None:
        self.sock.close()
