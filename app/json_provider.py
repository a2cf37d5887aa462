"""JSON in and out through orjson: fast, strict on input, always valid on output.

Input (request bodies, websocket frames): invalid UTF-8, `NaN`/`Infinity` and nesting deeper
than 1024 levels are errors (`ValueError`), found in bounded time and memory, never a
`RecursionError`. Output: keys sorted (as the original's), non-finite floats become `null`,
so no response is invalid JSON (RFC 8259 §6 has no NaN).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic_core import to_jsonable_python
from quart import Quart, Response
from quart.json.provider import DefaultJSONProvider

DUMP_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
# A request attribute: its body is read as JSON whatever its Content-Type (the scheduler API,
# as Flask-APScheduler reads it: `request.get_json(force=True)`).
JSON_OF_ANY_CONTENT_TYPE = "json_of_any_content_type"


def _default(value: Any) -> Any:
    try:
        return DefaultJSONProvider.default(value)
    except TypeError:
        return to_jsonable_python(value)  # pydantic models and the like (quart-schema's rule)


def loads(data: str | bytes) -> Any:
    """Parse JSON text. Raises `ValueError` (orjson.JSONDecodeError) for anything RFC 8259
    refuses, invalid UTF-8, NaN/Infinity, or nesting deeper than 1024."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """UTF-8 JSON of `value`, keys sorted, NaN and Infinity as null."""
    return orjson.dumps(value, default=_default, option=DUMP_OPTIONS)


class OrjsonProvider(DefaultJSONProvider):
    """Quart's JSON provider on orjson (`app.json`)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs.get("indent"):
            return orjson.dumps(
                obj, default=_default, option=DUMP_OPTIONS | orjson.OPT_INDENT_2
            ).decode()
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(dumps(obj) + b"\n", mimetype=self.mimetype)


def use_orjson(app: Quart) -> None:
    """Make orjson the app's JSON provider and let plain JSON results skip quart-schema's
    conversion. Call after `QuartSchema(app)`."""
    app.json = OrjsonProvider(app)
    _skip_conversion_of_plain_json(app)


# What a view may return that needs no conversion: JSON values, text, bytes, a status, a
# response, or no headers.
_UNCONVERTED = (dict, list, str, bytes, int, Response, type(None))


def _skip_conversion_of_plain_json(app: Quart) -> None:
    # quart-schema's make_response passes every dict or list a view returns through a new
    # pydantic TypeAdapter(dict) (a core schema built per response: 12% of /healthz's CPU).
    # orjson and `_default` serialise plain JSON as it is, nested models included, so only
    # models, dataclasses and the like still go through quart-schema's conversion.
    converting: Callable[[Any], Awaitable[Response]] = app.make_response  # type: ignore[assignment]
    plain: Callable[[Any], Awaitable[Response]] = converting.__wrapped__  # type: ignore[attr-defined]

    async def make_response(result: Any) -> Response:
        parts = result if isinstance(result, tuple) else (result,)
        if all(isinstance(part, _UNCONVERTED) for part in parts):
            return await plain(result)
        return await converting(result)

    app.make_response = make_response  # type: ignore[method-assign]
