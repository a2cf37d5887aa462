"""The ASGI entry point for Hypercorn: `app.asgi:app`, configured from the environment."""

from app import create_app

app = create_app()
