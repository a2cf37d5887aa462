"""The `/api/v1` blueprint: the 17 routes of the Flask original (contract §1)."""

from __future__ import annotations

from quart import Blueprint

from app.api import blogs, online, tags, tokens, users

api_v1 = Blueprint("api_v1", __name__, url_prefix="/api/v1")
api_v1.register_blueprint(users.blueprint)
api_v1.register_blueprint(blogs.blueprint)
api_v1.register_blueprint(tags.blueprint)
api_v1.register_blueprint(tokens.blueprint)
api_v1.register_blueprint(online.blueprint)
