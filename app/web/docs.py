"""`/docs`: Swagger UI for `/openapi.json`, served from this service (no CDN, works offline);
`/asyncapi.json`: the websockets' AsyncAPI document.

The UI's files come from the `swagger-ui-bundle-v2` package (Swagger UI 5, Apache-2.0); the page
runs under the same Content-Security-Policy as every other page (its one inline script carries
the response's nonce).
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, jsonify, render_template, send_from_directory
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

blueprint = Blueprint("docs", __name__)

ASSETS = Path(swagger_ui_path)
SERVED_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)


@blueprint.get("/docs")
@hide
async def swagger_ui() -> str:
    """The interactive API documentation."""
    return await render_template("docs.html")


@blueprint.get("/asyncapi.json")
@hide
async def asyncapi() -> Response:
    """The websocket protocol as an AsyncAPI 3.0 document (app.realtime.asyncapi)."""
    from app.realtime.asyncapi import asyncapi_document

    return jsonify(asyncapi_document())


@blueprint.get("/docs/assets/<name>")
@hide
async def swagger_ui_asset(name: str) -> Response:
    """One file of Swagger UI (cached for a day)."""
    if name not in SERVED_ASSETS:
        raise NotFound("name: no such documentation asset")
    response = await send_from_directory(ASSETS, name)
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response
