"""The ASGI entry point for Hypercorn: `app.asgi:app`, configured from the environment, with the
server patches applied (app.served)."""

from app.served import create_served_app

app = create_served_app()
