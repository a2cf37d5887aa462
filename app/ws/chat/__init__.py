"""Chat over native websockets (docs/websockets.md): one module per endpoint, the routes here.

- `/websocket` (`relay`): the seed's anonymous group chat: every text frame to every client.
- `/websocket/<nickname>` (`nickname`): the seed's nickname chat: `{"msg"}` to everyone as
  `{"name", "msg"}`; with `to_user` or `to_client`, only to that nickname as
  `{"from_user", "msg"}`.
- `/ws/chat` (`room_chat`): rooms with presence and a resumable log: events `join`, `leave`,
  `message`, `private`, `ping`.
Everything crosses workers and containers through the hub's broker.
"""

from __future__ import annotations

from quart import Blueprint, render_template
from quart_schema import hide

from app.auth.identity import current_identity
from app.ws.chat import nickname, relay, room_chat

blueprint = Blueprint("chat", __name__)
blueprint.add_websocket("/websocket", "relay_socket", relay.relay_socket)
blueprint.add_websocket("/websocket/<nickname>", "nickname_socket", nickname.nickname_socket)
blueprint.add_websocket("/ws/chat", "chat_socket", room_chat.chat_socket)


@blueprint.get("/chat")
@hide
async def chat_page() -> str:
    """The chat page: nickname (or the logged-in user), room, messages, private recipient, and
    who is in the room."""
    return await render_template("chat.html", identity=current_identity())
