"""Security headers on every response (docs/security.md; OWASP Secure Headers Project).

- every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  `Referrer-Policy: same-origin`, and in production `Strict-Transport-Security`;
- HTML pages: a Content-Security-Policy allowing only this origin, scripts and styles only from
  this origin or inline with this response's nonce (`csp_nonce()` in templates), and
  `frame-ancestors 'none'`;
- everything else (JSON, files): `default-src 'none'; frame-ancestors 'none'`, so a response
  opened as a document can run nothing.

A header the response already has is kept. They are added to the ASGI response start by
app.request_hooks, encoded once per worker (`SecurityHeaders`), not set one by one on each
response's werkzeug `Headers`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, cast

from quart import Quart, g, request

from app.settings import Settings

NONCE_KEY = "csp_nonce"
# Where a response's nonce is kept in the request's ASGI scope (app.request_hooks reads it).
NONCE_SCOPE_KEY = "app.csp_nonce"
NON_HTML_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
CONTENT_SECURITY_POLICY = b"content-security-policy"
CONTENT_TYPE = b"content-type"
HTML = b"text/html"

Header = tuple[bytes, bytes]


def csp_nonce() -> str:
    """This response's CSP nonce, made when a template first asks for it."""
    nonce: str | None = g.get(NONCE_KEY)
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
        setattr(g, NONCE_KEY, nonce)
        cast("dict[str, Any]", request.scope)[NONCE_SCOPE_KEY] = nonce
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


class SecurityHeaders:
    """The headers above for one worker's settings, as ASGI header pairs.

    Arguments:
        settings: `APP_ENV` and `HSTS_MAX_AGE` decide `Strict-Transport-Security`.
    """

    def __init__(self, settings: Settings) -> None:
        common = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
        }
        if settings.app_env == "production" and settings.hsts_max_age:
            common["Strict-Transport-Security"] = (
                f"max-age={settings.hsts_max_age}; includeSubDomains"
            )
        self.defaults: list[Header] = [
            (name.lower().encode(), value.encode()) for name, value in common.items()
        ]
        self._non_html = (CONTENT_SECURITY_POLICY, NON_HTML_POLICY.encode())
        self._every_default = [*self.defaults, self._non_html]
        self._names_we_add = frozenset(name for name, _ in self._every_default)

    def added_to(self, headers: Iterable[Header], nonce: str | None) -> list[Header]:
        """`headers` (a response's, names in lower case as ASGI has them) with every header
        above that they lack; an HTML response with a `nonce` gets the page policy."""
        listed = list(headers)
        names = {name for name, _ in listed}
        if not names.intersection(self._names_we_add):  # the common case: add them all
            if nonce is not None and _is_html(listed):
                listed += self.defaults
                listed.append((CONTENT_SECURITY_POLICY, page_policy(nonce).encode()))
            else:
                listed += self._every_default
            return listed
        listed += [(name, value) for name, value in self.defaults if name not in names]
        if CONTENT_SECURITY_POLICY not in names:
            if nonce is not None and _is_html(listed):
                listed.append((CONTENT_SECURITY_POLICY, page_policy(nonce).encode()))
            else:
                listed.append(self._non_html)
        return listed


def _is_html(headers: list[Header]) -> bool:
    for name, value in headers:
        if name == CONTENT_TYPE:
            return value.split(b";", 1)[0].strip().lower() == HTML
    return False


def register_security_headers(app: Quart) -> None:
    """Give templates `csp_nonce()` (the headers themselves are app.request_hooks')."""
    app.jinja_env.globals["csp_nonce"] = csp_nonce
