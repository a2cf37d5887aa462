"""The floor of a Quart route on the service's Hypercorn settings: the same JSON as
GET /api/v1/user/<id> and /healthz, with nothing behind it (no hooks, no database)."""

from quart import Quart

app = Quart(__name__)
USER = {"id": "0190a8e4-6f1c-7d9e-a7d5-3f0c2b1a9e11", "name": "user0", "role": 0}


@app.get("/api/v1/user/<user_id>")
async def get_user(user_id: str) -> dict[str, object]:
    return {"code": 0, "data": {**USER, "id": user_id}, "status": "succeed"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
