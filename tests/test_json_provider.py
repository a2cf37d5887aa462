"""JSON output: plain results skip quart-schema's per-response conversion; models do not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import quart_schema.conversion
from pydantic import BaseModel, TypeAdapter
from quart import Quart
from quart_schema import QuartSchema

from app import json_provider


class Point(BaseModel):
    x: int
    y: int


@dataclass
class Pair:
    left: str
    right: str


@pytest.fixture
def adapters_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The types quart-schema builds a pydantic TypeAdapter for, in order."""
    built: list[Any] = []

    class CountingTypeAdapter(TypeAdapter):  # type: ignore[type-arg]
        def __init__(self, type_: Any, *args: Any, **kwargs: Any) -> None:
            built.append(type_)
            super().__init__(type_, *args, **kwargs)

    monkeypatch.setattr(quart_schema.conversion, "TypeAdapter", CountingTypeAdapter)
    return built


def _app() -> Quart:
    app = Quart(__name__)
    QuartSchema(app)
    json_provider.use_orjson(app)

    @app.get("/plain")
    async def plain() -> tuple[dict[str, Any], int, dict[str, str]]:
        return {"b": [1, 2], "a": {"nested": Point(x=1, y=2)}}, 201, {"X-Kind": "plain"}

    @app.get("/dataclass")
    async def dataclass_result() -> Pair:
        return Pair("l", "r")

    @app.get("/model")
    async def model_result() -> tuple[Point, int]:
        return Point(x=3, y=4), 202

    return app


async def test_plain_json_is_not_converted_and_keeps_status_and_headers(adapters_built) -> None:
    response = await _app().test_client().get("/plain")
    assert response.status_code == 201
    assert response.headers["X-Kind"] == "plain"
    # Sorted keys, the nested model serialised by the provider itself.
    assert await response.get_data() == b'{"a":{"nested":{"x":1,"y":2}},"b":[1,2]}\n'
    assert adapters_built == []


async def test_dataclasses_and_models_are_still_converted(adapters_built) -> None:
    client = _app().test_client()
    response = await client.get("/dataclass")
    assert response.status_code == 200 and await response.get_json() == {
        "left": "l",
        "right": "r",
    }
    assert adapters_built == [Pair]
    response = await client.get("/model")
    assert response.status_code == 202 and await response.get_json() == {"x": 3, "y": 4}


async def test_the_service_answers_probes_without_building_an_adapter(
    client, adapters_built
) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and await response.get_json() == {"status": "ok"}
    assert adapters_built == []
