"""The gevent-websocket chat recipe the service grew from, as a fan-out baseline: one
process, a set of sockets, and each text frame sent to every socket in turn (a slow receiver
blocks the loop, and so slows the sender, instead of queueing).
Usage: python -m bench.apps.gevent_relay PORT"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

clients: set = set()


def application(environ, start_response):  # type: ignore[no-untyped-def]
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"websocket only"]
    clients.add(ws)
    try:
        while True:
            message = ws.receive()
            if message is None:
                break
            for client in list(clients):
                try:
                    client.send(message)
                except Exception:
                    clients.discard(client)
    finally:
        clients.discard(ws)
    return []


if __name__ == "__main__":
    WSGIServer(
        ("127.0.0.1", int(sys.argv[1])), application, handler_class=WebSocketHandler, log=None
    ).serve_forever()
