"""The websocket side of a worker: its endpoints and what they share.

- `chat` (`/websocket`, `/websocket/<nickname>`, `/ws/chat`) and `monitor` (`/ws`): the
  endpoints; `session` and `handshake`: the glue every websocket passes through.
- `setup`: builds this worker's realtime parts (app.realtime: hub, broker, room service) and
  puts them in the app's state.

These sit above `app.state` (they read the worker's resources); app.realtime sits below it
and is given what it uses (docs/design.md, Layers).
"""
