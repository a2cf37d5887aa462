"""`/ws/chat` and the seed chat endpoints, in process (one worker, in-process broker)."""

from __future__ import annotations

import asyncio

import pytest

from app.state import app_state
from tests.auth_helpers import make_user
from tests.realtime.conftest import receive_json, send_json
from tests.waiting import eventually


async def registered(app, endpoint: str, count: int) -> None:
    """Wait until `count` connections of `endpoint` are registered with the hub: the test
    client returns before the server has taken a websocket in, and frames sent meanwhile
    reach only the clients already there (as with any server)."""

    async def check() -> bool:
        return len(app_state(app).hub.by_endpoint[endpoint]) == count

    await eventually(check)


async def join(ws, room: str, nickname: str | None = None) -> tuple[dict, dict]:
    frame = {"event": "join", "room": room}
    if nickname is not None:
        frame["nickname"] = nickname
    await send_json(ws, frame)
    return await receive_json(ws), await receive_json(ws)


async def drain(ws, quiet: float = 0.3) -> list[dict]:
    """Every frame that arrives until none has for `quiet` seconds."""
    frames = []
    while True:
        try:
            frames.append(await receive_json(ws, timeout=quiet))
        except TimeoutError:
            return frames


async def joins_seen(ws, names: set[str]) -> None:
    """Read presence diffs until `names` have joined (a burst may come as one batched diff)."""
    while names:
        frame = await receive_json(ws)
        assert frame["event"] == "presence_diff", frame
        names -= {entry["name"] for entry in frame["joins"]}


async def test_join_message_and_presence(client) -> None:
    async with client.websocket("/ws/chat") as ann, client.websocket("/ws/chat") as bob:
        state, history = await join(ann, "lobby", "ann")
        assert len(state.pop("claim")) >= 16  # the nickname's owner, kept by the client
        assert state == {
            "event": "presence_state",
            "room": "lobby",
            "you": "ann",
            "members": [{"name": "ann", "user_id": None}],
        }
        assert history == {
            "event": "history",
            "room": "lobby",
            "messages": [],
            "recovered": False,
            "epoch": "",
            "offset": 0,
        }

        state, _ = await join(bob, "lobby", "bob")
        assert [m["name"] for m in state["members"]] == ["ann", "bob"]
        assert await receive_json(ann) == {
            "event": "presence_diff",
            "room": "lobby",
            "joins": [{"name": "bob", "user_id": None}],
            "leaves": [],
        }

        await send_json(bob, {"event": "message", "room": "lobby", "text": "hello"})
        to_ann, to_bob = await receive_json(ann), await receive_json(bob)
        assert to_ann == to_bob
        assert to_ann["event"] == "message" and to_ann["from"] == "bob"
        assert to_ann["text"] == "hello" and len(to_ann["id"]) == 36
        assert to_ann["ts"].endswith("Z")
        assert to_ann["offset"] == 1 and to_ann["epoch"]

        await send_json(bob, {"event": "leave", "room": "lobby"})
        assert await receive_json(bob) == {"event": "left", "room": "lobby"}
        diff = await receive_json(ann)
        assert diff["leaves"] == [{"name": "bob", "user_id": None}]


async def test_disconnect_announces_the_leave(client) -> None:
    async with client.websocket("/ws/chat") as ann:
        await join(ann, "lobby", "ann")
        async with client.websocket("/ws/chat") as bob:
            await join(bob, "lobby", "bob")
            await receive_json(ann)  # bob joined
        diff = await receive_json(ann)
        assert diff["event"] == "presence_diff" and diff["leaves"][0]["name"] == "bob"


async def test_history_on_join_is_bounded(serve_app) -> None:
    async with serve_app(chat_history=3, api_auth="open") as app:
        client = app.test_client()
        async with client.websocket("/ws/chat") as ann:
            await join(ann, "lobby", "ann")
            for i in range(5):
                await send_json(ann, {"event": "message", "room": "lobby", "text": f"m{i}"})
                await receive_json(ann)
        async with client.websocket("/ws/chat") as bob:
            _, history = await join(bob, "lobby", "bob")
            assert [m["text"] for m in history["messages"]] == ["m2", "m3", "m4"]


async def test_nicknames_are_unique_per_room(client) -> None:
    async with client.websocket("/ws/chat") as first, client.websocket("/ws/chat") as second:
        await join(first, "lobby", "ann")
        await send_json(second, {"event": "join", "room": "lobby", "nickname": "ann"})
        error = await receive_json(second)
        assert error == {
            "event": "error",
            "msg": "nickname: 'ann' is taken in 'lobby'",
            "ref": "join",
        }
        state, _ = await join(second, "other-room", "ann")  # another room: free
        assert state["you"] == "ann"
    async with client.websocket("/ws/chat") as third:  # freed when they left
        state, _ = await join(third, "lobby", "ann")
        assert state["you"] == "ann"


async def test_private_messages(client) -> None:
    async with (
        client.websocket("/ws/chat") as ann,
        client.websocket("/ws/chat") as bob,
        client.websocket("/ws/chat") as eve,
    ):
        await join(ann, "lobby", "ann")
        await join(bob, "lobby", "bob")
        await join(eve, "lobby", "eve")
        await joins_seen(ann, {"bob", "eve"})
        await joins_seen(bob, {"eve"})
        await send_json(ann, {"event": "private", "room": "lobby", "to": "bob", "text": "psst"})
        to_bob, echo = await receive_json(bob), await receive_json(ann)
        assert to_bob == echo and to_bob["event"] == "private"
        assert (to_bob["from"], to_bob["to"], to_bob["text"]) == ("ann", "bob", "psst")
        await send_json(ann, {"event": "private", "room": "lobby", "to": "zed", "text": "?"})
        assert await receive_json(ann) == {
            "event": "error",
            "ref": "private",
            "msg": "to: 'zed' is not in 'lobby'",
        }
        # Eve saw no private message (at most a batched diff repeating names she has).
        assert all(frame["event"] == "presence_diff" for frame in await drain(eve))


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"event": "message", "room": "lobby", "text": "x"}, "room: join 'lobby' first"),
        ({"event": "join", "room": "lobby"}, "nickname: required for anonymous clients"),
        ({"event": "shout"}, "event: unknown event 'shout'"),
    ],
)
async def test_errors_keep_the_connection(client, frame, error) -> None:
    async with client.websocket("/ws/chat") as ws:
        await send_json(ws, frame)
        assert (await receive_json(ws))["msg"].startswith(error)
        await ws.send("{broken")
        assert (await receive_json(ws))["msg"].startswith("frame is not valid JSON (")
        await send_json(ws, {"event": "ping"})
        assert await receive_json(ws) == {"event": "pong"}


async def test_logged_in_users_speak_under_their_account_name(serve_app) -> None:
    async with serve_app() as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        login = await client.post("/login", json={"name": "alice", "password": "alice-password"})
        assert login.status_code == 200
        async with client.websocket("/ws/chat") as ws:
            state, _ = await join(ws, "lobby", "ignored-nickname")
            assert state["you"] == "alice"
            assert state["members"][0]["user_id"] is not None
        anonymous = app.test_client()
        async with anonymous.websocket("/ws/chat") as ws:
            await send_json(ws, {"event": "join", "room": "lobby", "nickname": "alice"})
            assert "looks like) an account's name" in (await receive_json(ws))["msg"]


async def test_open_connections_count_as_online(serve_app) -> None:
    from app.services.tokens import issue_token

    async with serve_app() as app:
        user = await make_user(app, "alice", password="alice-password")
        async with app_state(app).database.session() as session:
            token = await issue_token(
                session, user.id, ttl_seconds=60
            )  # no request: not online yet
        client = app.test_client()
        assert (await (await client.get("/api/v1/online")).get_json())["data"]["users"] == []
        async with client.websocket(f"/ws/chat?token={token}") as ws:
            await send_json(ws, {"event": "ping"})
            await receive_json(ws)
            online = await (await client.get("/api/v1/online")).get_json()
            assert [u["id"] for u in online["data"]["users"]] == [user.id]


async def test_seed_group_chat_relays_text_to_everyone(app, client) -> None:
    async with client.websocket("/websocket") as one, client.websocket("/websocket") as two:
        await registered(app, "relay", 2)
        await one.send("大家好")
        assert await one.receive() == "大家好" and await two.receive() == "大家好"
        await two.send("")  # heartbeat: not relayed
        await two.send("second")
        assert await one.receive() == "second"


async def test_seed_nickname_chat(app, client) -> None:
    async with client.websocket("/websocket/ann") as ann, client.websocket("/websocket/bob") as bob:
        await registered(app, "nickname", 2)
        await send_json(ann, {"msg": "hi all"})
        assert await receive_json(bob) == {"name": "ann", "msg": "hi all"}
        assert await receive_json(ann) == {"name": "ann", "msg": "hi all"}
        await send_json(ann, {"msg": "just you", "to_user": "bob"})
        assert await receive_json(bob) == {"from_user": "ann", "msg": "just you"}
        await send_json(bob, {"msg": "back", "to_client": "ann"})
        assert await receive_json(ann) == {"from_user": "bob", "msg": "back"}
        await send_json(ann, {"msg": "hello?", "to_user": "ghost"})
        error = await receive_json(ann)
        assert error["event"] == "error" and "'ghost' is not online" in error["msg"]
        await ann.send("not json")
        assert (await receive_json(ann))["event"] == "error"
        await send_json(ann, {"to_user": "bob"})
        assert (await receive_json(ann))["msg"] == "msg: required"
        await send_json(ann, {"msg": "still here"})
        assert (await receive_json(bob))["msg"] == "still here"


async def test_bad_nickname_in_the_url_is_refused(client) -> None:
    from quart.testing.connections import WebsocketResponseError

    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/websocket/%20%20") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 400


async def test_a_rejoin_with_since_gets_exactly_what_it_missed(serve_app) -> None:
    """The memory backend (embedded default): offsets, then a rejoin from a position gets every
    later message and `recovered: true`; a position older than the log gets the latest ones and
    `recovered: false`; live messages follow with no gap and no duplicate."""
    async with serve_app(chat_history=10, api_auth="open") as app:
        client = app.test_client()
        async with client.websocket("/ws/chat") as ann, client.websocket("/ws/chat") as bob:
            await join(ann, "lobby", "ann")
            await join(bob, "lobby", "bob")
            await receive_json(ann)  # bob joined
            seen = []
            for i in range(3):
                await send_json(ann, {"event": "message", "room": "lobby", "text": f"a{i}"})
                seen.append(await receive_json(bob))
                await receive_json(ann)
            assert [m["offset"] for m in seen] == [1, 2, 3]
            epoch = seen[0]["epoch"]
            await send_json(bob, {"event": "leave", "room": "lobby"})
            await receive_json(bob)
            await receive_json(ann)  # bob left
            for i in range(4):
                await send_json(ann, {"event": "message", "room": "lobby", "text": f"b{i}"})
                await receive_json(ann)
            await send_json(
                bob,
                {
                    "event": "join",
                    "room": "lobby",
                    "nickname": "bob",
                    "since": {"epoch": epoch, "offset": 3},
                },
            )
            await receive_json(bob)  # presence_state
            history = await receive_json(bob)
            assert history["recovered"] is True and history["offset"] == 7
            assert [m["text"] for m in history["messages"]] == ["b0", "b1", "b2", "b3"]
            await send_json(ann, {"event": "message", "room": "lobby", "text": "live"})
            live = await receive_json(bob)
            assert live["text"] == "live" and live["offset"] == 8
        async with client.websocket("/ws/chat") as carl:
            await send_json(
                carl,
                {
                    "event": "join",
                    "room": "lobby",
                    "nickname": "carl",
                    "since": {"epoch": "x", "offset": 1},
                },
            )
            await receive_json(carl)
            history = await receive_json(carl)
            assert history["recovered"] is False and len(history["messages"]) == 8


async def test_a_reconnecting_anonymous_client_keeps_its_nickname_with_its_claim(client) -> None:
    """The old connection is not gone yet (its worker died, or the drop is not noticed): the
    nickname is still held. With the claim from its first presence_state, the client takes it
    back at once; without it, the nickname stays taken."""
    async with client.websocket("/ws/chat") as old:
        state, _ = await join(old, "lobby", "ann")
        async with client.websocket("/ws/chat") as thief:
            await send_json(thief, {"event": "join", "room": "lobby", "nickname": "ann"})
            assert (await receive_json(thief))["msg"] == "nickname: 'ann' is taken in 'lobby'"
        async with client.websocket("/ws/chat") as back:
            await send_json(
                back, {"event": "join", "room": "lobby", "nickname": "ann", "claim": state["claim"]}
            )
            again = await receive_json(back)
            assert again["event"] == "presence_state" and again["you"] == "ann"
            assert again["claim"] == state["claim"]


async def test_a_client_that_connects_while_the_worker_drains_is_closed_with_1001(app) -> None:
    """The drain closes every websocket with 1001; a client reconnecting at once to the same
    worker (still listening until Hypercorn stops) is closed as it opens, so the drain ends
    instead of waiting on it (seen: a browser page reconnecting held a shutdown past 15 s)."""
    from quart.testing.connections import WebsocketDisconnectError

    hub = app_state(app).hub
    await hub.close_all(1001, "server shutting down")  # nobody connected: returns at once
    async with app.test_client().websocket("/ws/chat") as ws:
        with pytest.raises(WebsocketDisconnectError) as closed:
            await asyncio.wait_for(ws.receive(), 5)
    assert closed.value.args == (1001,)

    async def gone() -> bool:
        return not hub.connections

    await eventually(gone)


async def test_a_message_with_an_id_is_acknowledged_and_a_resend_is_not_published_twice(
    client,
) -> None:
    async with client.websocket("/ws/chat") as ann, client.websocket("/ws/chat") as bob:
        state, _ = await join(ann, "lobby", "ann")
        await join(bob, "lobby", "bob")
        await joins_seen(ann, {"bob"})
        frame = {"event": "message", "room": "lobby", "text": "hi", "id": "m-1"}
        await send_json(ann, frame)
        message = await receive_json(ann)  # the sender's echo, then its ack
        ack = await receive_json(ann)
        assert ack == {
            "event": "ack",
            "id": "m-1",
            "room": "lobby",
            "offset": message["offset"],
            "epoch": message["epoch"],
            "duplicate": False,
        }
        assert (await receive_json(bob))["offset"] == message["offset"]
        # The ack was lost: the client resends, from a new connection with its claim.
        async with client.websocket("/ws/chat") as again:
            await send_json(
                again,
                {"event": "join", "room": "lobby", "nickname": "ann", "claim": state["claim"]},
            )
            await receive_json(again), await receive_json(again)
            await send_json(again, frame)
            assert await receive_json(again) == {**ack, "duplicate": True}
        assert all(f["event"] != "message" for f in await drain(bob))  # not delivered twice
        # Another sender's id "m-1" is its own message.
        await send_json(bob, frame)
        assert (await receive_json(bob))["offset"] == message["offset"] + 1


async def test_a_malformed_message_id_is_an_error_naming_it(client) -> None:
    async with client.websocket("/ws/chat") as ws:
        await join(ws, "lobby", "ann")
        bad = {"event": "message", "room": "lobby", "text": "x", "id": "has space"}
        await send_json(ws, bad)
        assert (await receive_json(ws))["msg"].startswith("id: String should match pattern")
