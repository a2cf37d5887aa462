"""Stage 0 of admission (app.admission): framing a request may not have. Both
`Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1: a request smuggled behind the body),
several `Host` headers or an invalid one, or an absolute-form target that is not an http(s) URI
(RFC 9112 §3.2) are refused with 400 and the connection closed."""

from __future__ import annotations

import re
from typing import Any

Scope = dict[str, Any]


def framing_refusal(scope: Scope) -> tuple[str | None, bool]:
    """Why the request's framing is refused (None: it is not), and whether it declares a body
    (`Content-Length` or `Transfer-Encoding`)."""
    lengths = codings = hosts = 0
    host = b""
    for name, value in scope["headers"]:
        if name == b"content-length":
            lengths += 1
        elif name == b"transfer-encoding":
            codings += 1
        elif name == b"host":
            hosts += 1
            host = value
    refusal = request_target_refusal(scope, hosts, host)
    if refusal is not None:
        return refusal, False
    if lengths and codings:
        return "Content-Length and Transfer-Encoding together are refused", False
    return None, bool(lengths or codings)


# RFC 3986 §3.2.2-3.2.3: an IP literal, or a reg-name / IPv4 address, and a port.
_VALID_HOST = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]{0,5})?$")
_HTTP_ABSOLUTE_FORM = re.compile(rb"^https?://", re.IGNORECASE)


def request_target_refusal(scope: Scope, hosts: int, host: bytes) -> str | None:
    """Why the request's target or `Host` is one RFC 9112 refuses (§3.2: a missing Host in
    HTTP/1.1, several, or an invalid one is a 400; §3.2.2: the absolute form is an http(s)
    URI), or None."""
    if hosts > 1:
        return "more than one Host header"
    if hosts == 1 and _VALID_HOST.match(host) is None:
        return "the Host header is not a host[:port]"
    raw_path = scope.get("raw_path") or b"/"
    if raw_path[:1] != b"/" and raw_path != b"*" and _HTTP_ABSOLUTE_FORM.match(raw_path) is None:
        return "the request target is neither a path nor an http(s) URI"
    return None
