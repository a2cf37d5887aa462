"""Admission control: a worker bounds the work it does at once, never the waiting on its clients.
One job per module: framing.py (stage 0), bodies.py (stage 1), queue.py (stages 2 and 3), and
middleware.py, the ASGI middleware that runs them in order.

An ASGI middleware around the app, for HTTP requests (websockets and the probes `/healthz`,
`/readyz`, `/metrics` pass straight through). A request goes through three stages:

0. **Framing.** A request with both `Content-Length` and `Transfer-Encoding` is refused with
   400 and its connection closed (RFC 9112 §6.1), the probes included; so is one with several
   `Host` headers, an invalid one, or an absolute-form target that is not an http(s) URI
   (RFC 9112 §3.2). (h11 refuses a
   `Transfer-Encoding` other than `chunked` before the app: app.hypercorn_patches.)
1. **Client I/O, bounded in time and per address.** A request that declares a body
   (`Content-Length` or `Transfer-Encoding`) has it read in full before it counts as work:
   within `HTTP_BODY_TIMEOUT` seconds (else 408, connection closed), at most
   `MAX_CONTENT_LENGTH` bytes (else 413), and with at most `HTTP_CLIENT_MAX_BODIES` bodies
   arriving at once from one client address (else 429). A client trickling its upload holds a
   socket and a buffer, nothing else.
2. **Admission.** At most `HTTP_CONCURRENCY` requests run at once; the others wait in a FIFO
   queue of at most `HTTP_QUEUE_MAX`. A request that cannot join the queue, or that has waited
   longer than `HTTP_QUEUE_TIMEOUT`, is answered 503 with `Retry-After` at once, by this
   middleware, for a few microseconds of work: a client sees a fast refusal, never its own
   time-out. Shed requests are counted (`http_requests_shed_total`), not logged one by one.
3. **Release at the response's start.** The slot is handed to the next waiting request when
   the app starts its response (or ends without one): writing the response to a slow reader
   holds no slot.

Why these bounds (docs/performance.md, measured by `python -m bench --suite concurrency`):
- A fixed limit, the database pool's size (`DB_POOL_SIZE`, 8), not an adaptive one. A worker
  runs one event loop: past a few requests at once, more only lengthen every loop turn and buy
  no throughput on the CPU; with a database 20 ms away, the pool is what bounds throughput, and
  fewer requests than connections leave connections idle while more would open and close
  overflow connections for each (measured: 9% of requests did at 15 over a pool of 5). An
  AIMD or gradient limit (Netflix's concurrency-limits, Envoy) steers by latency or loop lag;
  at high connection counts both rise with the work of reading and refusing the requests
  outside the limit as much as with the admitted ones (measured: loop lag p50 10-20 ms at
  4,000 connections with 10 admitted), so it would shrink the limit where the pool, not the
  CPU, is the bound. docs/performance.md has the figures.
- `HTTP_QUEUE_TIMEOUT` 2 s: clients that retry at once (`wrk`, or a crowd pressing reload)
  come back N/timeout times a second; at 1 s, 1,000 connections on two workers had 1,500-2,600
  of 8 s's requests shed and kept 0.6-0.7 of the throughput, at 2 s none were shed.
"""

from app.admission.middleware import EXEMPT_PATHS, Admission
from app.admission.queue import AdmissionQueue

__all__ = ["EXEMPT_PATHS", "Admission", "AdmissionQueue"]
