"""The scheduler: APScheduler 3's AsyncIOScheduler on the service's event loop, the
Flask-APScheduler REST API, and exactly-once runs across workers and containers.

Every worker runs a scheduler *paused*, so the API can read and change the shared job store from
any worker; only the leader (the holder of a Redis lease, `leadership`) resumes its scheduler
and runs jobs. README "Scheduler" has the settings and the takeover time.
"""
