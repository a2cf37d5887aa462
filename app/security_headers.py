"""Security headers on every response (docs/security.md; OWASP Secure Headers Project).

- every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  `Referrer-Policy: same-origin`, and in production `Strict-Transport-Security`;
- HTML pages: a Content-Security-Policy allowing only this origin, scripts and styles only from
  this origin or inline with this response's nonce (`csp_nonce()` in templates), and
  `frame-ancestors 'none'`;
- everything else (JSON, files): `default-src 'none'; frame-ancestors 'none'`, so a response
  opened as a document can run nothing.
"""

from __future__ import annotations

import secrets

from quart import Quart, Response, g

from app.settings import Settings

NONCE_KEY = "csp_nonce"
NON_HTML_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def csp_nonce() -> str:
    """This response's CSP nonce, made when a template first asks for it."""
    nonce: str | None = g.get(NONCE_KEY)
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
        setattr(g, NONCE_KEY, nonce)
    return nonce


def page_policy(nonce: str) -> str:
    """The CSP of an HTML page whose inline scripts and styles carry `nonce`."""
    return (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        f"style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def register_security_headers(app: Quart, settings: Settings) -> None:
    """Add the headers above to every response of `app`."""
    common = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }
    if settings.app_env == "production" and settings.hsts_max_age:
        common["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age}; includeSubDomains"
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    defaults = [(name.lower(), name, value) for name, value in common.items()]

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        # One pass over the headers: werkzeug's lookup of a missing header raises and catches.
        present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118
        for lowered, name, value in defaults:
            if lowered not in present:
                response.headers.add(name, value)
        if "content-security-policy" not in present:
            nonce = g.get(NONCE_KEY)
            is_page = response.mimetype == "text/html"
            response.headers["Content-Security-Policy"] = (
                page_policy(nonce) if is_page and nonce else NON_HTML_POLICY
            )
        return response
