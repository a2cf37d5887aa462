"""Native websockets: the hub, its brokers, chat endpoints and the memory monitor.

Each worker keeps its own connections (`hub.Hub`); a broker carries messages between workers
(Redis pub/sub when `REDIS_URL` is set, in-process otherwise); room membership and history live
in Redis (or memory), so every worker and container sees the same rooms. Protocol: docs/websockets.md.
"""
