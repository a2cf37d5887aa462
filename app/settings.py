"""Every knob of the service, read from the environment (and `.env` in development).

Each field's environment variable is its upper-case name (`DATABASE_URL`, `DB_POOL_SIZE`, …).
The defaults run the embedded configuration: a SQLite file, no Redis, one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.validation import field_name

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-change-me"  # noqa: S105 (a marker, refused in production)
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/quart-framework.db"
SECRET_KEY_MIN = 32  # characters; e.g. secrets.token_urlsafe(32) gives 43


class Settings(BaseSettings):
    """The service configuration.

    Raises:
        pydantic.ValidationError: a value is malformed, or `SECRET_KEY` is missing, shorter
            than 32 characters or left at the development marker outside `APP_ENV=development`.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    app_env: Literal["development", "production", "testing"] = "production"
    secret_key: str = DEVELOPMENT_SECRET_KEY

    # Database. The PooledDB knobs of the original map as: maxcached/mincached ~ pool_size,
    # maxconnections = pool_size + max_overflow, blocking -> wait up to pool_timeout seconds,
    # ping -> pool_pre_ping. pool_recycle stays below MySQL's wait_timeout (28800 s by default).
    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = Field(default=8, ge=1, le=200)
    db_max_overflow: int = Field(default=4, ge=0, le=500)
    db_pool_timeout: float = Field(default=10.0, gt=0, le=300)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True
    # With pre-ping on, only a connection idle in the pool for longer than this is pinged before
    # use (a restart or failover shows up there); one in steady use is not, which saves a round
    # trip per checkout (app/db.py). 0 pings at every checkout.
    db_pool_ping_idle_seconds: float = Field(default=1.0, ge=0, le=86400)
    # Bounds on database work (docs/operations.md): opening a connection, one statement (server
    # side: MariaDB max_statement_time / MySQL max_execution_time), and one unit of work (a
    # `Database.session()` block, client side: what holds a hung server to a bound).
    db_connect_timeout: float = Field(default=3.0, gt=0, le=60)
    db_statement_timeout: float = Field(default=5.0, gt=0, le=3600)
    db_timeout: float = Field(default=5.0, gt=0, le=3600)
    db_echo: bool = False
    # Idempotency-Key (docs/api.md "Safe retries"): how long a stored answer is replayed, and
    # how long a request holds its key before a retry may take it over (a worker that died
    # mid-request; longer than DB_TIMEOUT, which bounds a request's database work).
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    idempotency_lease_seconds: float = Field(default=10.0, gt=0, le=600)
    # Conditional requests (docs/api.md "Safe retries"): a PUT or DELETE of a user, blog or tag
    # without If-Match is refused with 428 (the original's clients send none: off by default).
    require_if_match: bool = False

    # One Redis topology (docs/operations.md "Redis topologies"): a server (`REDIS_URL`), a
    # master found through Sentinel (`REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER`; the data
    # nodes' `REDIS_PASSWORD` and `REDIS_DB`, the sentinels' own `REDIS_SENTINEL_PASSWORD`),
    # or a Redis Cluster (`REDIS_CLUSTER_NODES`, some of its nodes; `REDIS_PASSWORD`).
    redis_url: str | None = None
    redis_cluster_nodes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinel_master: str | None = None
    redis_sentinel_password: str | None = None
    redis_password: str | None = None
    redis_db: int = Field(default=0, ge=0, le=1000)
    redis_timeout: float = Field(default=1.0, gt=0, le=30)
    redis_max_connections: int = Field(default=50, ge=2, le=10_000)
    redis_pool_timeout: float = Field(default=5.0, gt=0, le=60)
    redis_probe_seconds: float = Field(default=0.5, gt=0, le=60)
    # Whether /readyz needs Redis (app/health.py): "required" (503 while a PING fails), or
    # "optional" (reported only: the service serves without Redis, degraded).
    readyz_redis: Literal["required", "optional"] = "required"

    # Authentication (README "Auth modes"). `open` restores the original's anonymous writes.
    api_auth: Literal["required", "open"] = "required"
    # The realm of the `WWW-Authenticate` challenges of a 401 (RFC 7235 §2.2); a client of
    # Flask-APScheduler's API expects "Authentication Required" (README "Scheduler").
    auth_realm: str = Field(
        default="quart-framework", min_length=1, max_length=100, pattern=r"^[ !#-\[\]-~]+$"
    )
    token_ttl_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    session_cookie_secure: bool | None = None  # None: on, except in development and testing
    permanent_session_lifetime: int = Field(default=7 * 86400, ge=60)
    # The HTTP server of `serve` (app/supervisor.py): Hypercorn (the default, every patch of
    # app/hypercorn_patches.py) or Uvicorn with httptools and uvloop (app/uvicorn_server.py;
    # README "Servers" says what differs).
    server: Literal["hypercorn", "uvicorn"] = "hypercorn"
    # Admission control (app/admission/, docs/performance.md). HTTP requests a worker runs at
    # once (None: its database pool's size + overflow; 0: no limit); more wait, first come first
    # served, at most `http_queue_max` of them and `http_queue_timeout` seconds each (then 503
    # with Retry-After). A body must arrive within `http_body_timeout` seconds (then 408), with
    # at most `http_client_max_bodies` arriving at once from one client address (then 429).
    http_concurrency: int | None = Field(default=None, ge=0, le=10_000)
    http_queue_timeout: float = Field(default=2.0, gt=0, le=300)
    http_queue_max: int = Field(default=2048, ge=1, le=1_000_000)
    http_body_timeout: float = Field(default=10.0, gt=0, le=3600)
    http_client_max_bodies: int = Field(default=32, ge=1, le=100_000)
    # Connections (app/hypercorn_patches.py, IdleTimer): a request's line and headers must arrive
    # within `http_header_timeout` seconds (from a new connection's start or the next request's
    # first byte; then the connection is closed); an idle keep-alive connection is kept for
    # `http_keep_alive_timeout` seconds (None: hypercorn.toml's `keep_alive_timeout`, 75 s),
    # longer than the idle timeout of the proxy in front (nginx's upstream keep-alive, 60 s).
    http_header_timeout: float = Field(default=5.0, gt=0, le=3600)
    # HTTP/1 on Hypercorn (app/hypercorn_http1.py): ordinary requests parsed by httptools (C),
    # the rest by h11; "h11" keeps Hypercorn's own protocol for every request.
    http1_parser: Literal["httptools", "h11"] = "httptools"
    http_keep_alive_timeout: float | None = Field(default=None, gt=0, le=86400)
    # Seconds a worker may keep the answer of a token or session check (app/auth/
    # credential_cache.py; needs REDIS_URL, whose epoch revokes kept answers everywhere at once).
    # 0 checks the database on every request.
    credential_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Failed credential checks allowed per account name, and per client address (docs/security.md).
    auth_rate_limit: str = "10/minute"
    auth_address_rate_limit: str = "30/minute"

    # Presence: None picks redis when REDIS_URL is set, else memory.
    presence_backend: Literal["redis", "database", "memory"] | None = None
    online_last_minutes: int = Field(default=5, ge=1, le=1440)
    presence_database_max_minutes: int = Field(default=30 * 1440, ge=1)
    # Prefix of every Redis key of this service (PRESENCE_KEY_PREFIX is its old name).
    redis_key_prefix: str = Field(
        default="", validation_alias=AliasChoices("redis_key_prefix", "presence_key_prefix")
    )

    # `GET /metrics` requires `Authorization: Bearer <token>` when set (docs/operations.md).
    metrics_token: str | None = None

    # Proxies in front of the service whose X-Forwarded-For is trusted (0: use the peer address).
    forwarded_allow_hops: int = Field(default=0, ge=0, le=10)

    # Websockets (docs/websockets.md).
    # Comma-separated origins, e.g. "https://a.example,https://b.example"; empty: same origin only.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ws_max_message_bytes: int = Field(default=65536, ge=128, le=16 * 1024 * 1024)
    ws_send_queue: int = Field(default=256, ge=1, le=100_000)
    # Seconds the oldest frame waiting for a client may wait before it is closed with 1013
    # (app/realtime/connection.py): the backlog is bounded in time as well as in frames.
    ws_send_max_delay: float = Field(default=2.0, gt=0, le=600)
    # Negotiate permessage-deflate (RFC 7692) when a client offers it; off: it costs CPU per
    # frame and saves nothing on small JSON frames (docs/websockets.md, measured by bench/).
    ws_compression: bool = False
    ws_idle_timeout: float = Field(default=60.0, gt=0)
    ws_rate_limit: str = "20/second"
    ws_flood_strikes: int = Field(default=5, ge=1)
    ws_room_heartbeat: float = Field(default=10.0, gt=0)
    monitor_interval: float = Field(default=2.0, gt=0)
    chat_history: int = Field(default=50, ge=0, le=10_000)
    chat_history_seconds: int = Field(default=86400, ge=60)  # kept after a room's last message

    # Scheduler (README "Scheduler"; Flask-APScheduler's SCHEDULER_* names where they exist).
    scheduler_enabled: bool = False
    scheduler_api_enabled: bool = True
    # Where the API's routes live (Flask-APScheduler's SCHEDULER_API_PREFIX), e.g. /api/jobs.
    scheduler_api_prefix: str = Field(default="/scheduler", pattern=r"^(/[A-Za-z0-9._~-]+)+$")
    scheduler_jobstore: Literal["memory", "redis", "sqlalchemy"] | None = (
        None  # None: redis if REDIS_URL
    )
    scheduler_sqlalchemy_url: str | None = None  # a synchronous driver, e.g. mysql+pymysql://…
    scheduler_timezone: str | None = None  # None: DISPLAY_TIMEZONE
    scheduler_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    scheduler_job_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # JSON, as Flask-APScheduler's JOBS (which is accepted as a name too): a list of
    # app.job_definitions.JobDefinition, parsed by `_parse_scheduler_jobs`.
    scheduler_jobs: list[Any] = Field(
        default_factory=list, validation_alias=AliasChoices("scheduler_jobs", "jobs")
    )
    scheduler_thread_pool_size: int = Field(default=10, ge=1, le=200)
    scheduler_coalesce: bool = True
    scheduler_max_instances: int = Field(default=1, ge=1)
    scheduler_misfire_grace_time: int = Field(default=30, ge=1)
    scheduler_lease_seconds: float = Field(default=10.0, ge=1, le=600)
    # The shortest interval a job may have (app/scheduler/guard.py): shorter ones are refused
    # by the API (400) and, found in the store, never run.
    scheduler_min_interval_seconds: float = Field(default=1.0, ge=0.1, le=86400)
    scheduler_history: int = Field(default=50, ge=1, le=10_000)
    scheduler_builtin_jobs: bool = True

    upload_folder: Path = Path("var/uploads")
    upload_max_bytes: int = Field(default=1024 * 1024, ge=1)
    upload_folder_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # Strict-Transport-Security max-age in production (0: header off, e.g. no TLS in front).
    hsts_max_age: int = Field(default=365 * 86400, ge=0)
    display_timezone: str = "Asia/Shanghai"
    max_page_size: int = Field(default=1000, ge=1, le=100_000)
    max_content_length: int = Field(default=1024 * 1024, ge=1024)

    # Serving (`serve`): listen addresses, comma-separated, and worker processes; None keeps
    # hypercorn.toml's. `--bind`/`--workers` win over both.
    bind: Annotated[list[str], NoDecode] | None = None
    web_concurrency: int | None = Field(default=None, ge=1, le=64)

    # Traces (app/tracing.py, docs/operations.md "Traces"): on when an OTLP endpoint is set; the
    # exporter, the sampler (OTEL_TRACES_SAMPLER, _ARG) and the resource read the other
    # standard OTEL_* variables themselves.
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_sdk_disabled: bool = False
    # The memory monitor's frames get no spans unless asked for: its clients ping all day.
    trace_monitor_frames: bool = False

    # The cyclic garbage collector's thresholds (`gc.set_threshold`), set in each worker once
    # startup's objects are frozen (app/supervisor.py). Python's (700, 10, 10) promoted the
    # objects of requests waiting in the admission queue, and full collections over thousands of
    # connections' objects took 60-140 ms each: ~10% of a worker's CPU at 4,000 connections
    # (docs/performance.md). "0,0,0" turns the collector off (garbage in cycles is then kept).
    gc_thresholds: Annotated[tuple[int, int, int], NoDecode] = (100_000, 50, 100)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("scheduler_api_prefix")
    @classmethod
    def _prefix_of_its_own(cls, value: str) -> str:
        taken = (
            "/api/v1",
            "/ws",
            "/websocket",
            "/static",
            "/docs",
            "/metrics",
            "/healthz",
            "/readyz",
        )
        if any(value == path or value.startswith(path + "/") for path in taken):
            raise ValueError(f"{value!r} overlaps the service's own routes")
        return value

    @field_validator("display_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator(
        "allowed_origins", "scheduler_allowed_hosts", "scheduler_job_modules", "bind", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("gc_thresholds", mode="before")
    @classmethod
    def _split_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(","))
        return value

    @field_validator("gc_thresholds")
    @classmethod
    def _thresholds_in_range(cls, thresholds: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= threshold <= 10_000_000 for threshold in thresholds):
            raise ValueError("each of the 3 thresholds must be between 0 and 10000000")
        return thresholds

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        """redis-py's own parsing, at start: a URL it would refuse on first use (a bad host or
        port, another scheme) stops the service in one line, not each worker at each request."""
        if not value:
            return value  # unset; "" is how compose overrides clear it
        from redis.connection import parse_url

        try:
            parsed = parse_url(value)
        except ValueError as error:
            raise ValueError(f"not a Redis URL ({error})") from None
        if "path" not in parsed and not parsed.get("host"):
            raise ValueError("not a Redis URL (no host: redis://host:port/db)")
        return value

    @field_validator("redis_sentinels", "redis_cluster_nodes", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return [address.strip() for address in value.split(",") if address.strip()]
        return value

    @field_validator("redis_sentinels", "redis_cluster_nodes")
    @classmethod
    def _host_and_port(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return addresses

    @field_validator("scheduler_jobs")
    @classmethod
    def _parse_scheduler_jobs(cls, jobs: list[Any]) -> list[Any]:
        """Each job by the API's model (a discriminated union on `trigger`), imported only when
        jobs are configured: importing the settings imports no part of the scheduler."""
        if not jobs:
            return []
        from app.job_definitions import parse_job

        parsed = []
        for index, job in enumerate(jobs):
            try:
                parsed.append(parse_job(job))
            except ValidationError as error:
                problems = "; ".join(
                    _job_problem(job, item["loc"], item["msg"])
                    for item in error.errors(include_url=False, include_input=False)
                )
                raise ValueError(f"job [{index}]: {problems}") from None
        return parsed

    @field_validator("auth_rate_limit", "auth_address_rate_limit", "ws_rate_limit")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as error:
            raise ValueError(f"not a rate limit like '10/minute': {value!r}") from error
        return value

    @model_validator(mode="after")
    def _secret_key_outside_development(self) -> Settings:
        if self.app_env != "development" and (
            self.secret_key == DEVELOPMENT_SECRET_KEY or len(self.secret_key) < SECRET_KEY_MIN
        ):
            raise ValueError(
                f"SECRET_KEY must be a random value of at least {SECRET_KEY_MIN} characters when "
                f"APP_ENV={self.app_env} (for local runs use APP_ENV=development)"
            )
        self._one_redis_topology()
        if self.effective_presence_backend == "redis" and not self.redis_configured:
            raise ValueError("PRESENCE_BACKEND=redis needs a Redis (REDIS_URL, …)")
        if self.effective_scheduler_jobstore == "redis" and not self.redis_configured:
            raise ValueError("SCHEDULER_JOBSTORE=redis needs a Redis (REDIS_URL, …)")
        return self

    def _one_redis_topology(self) -> None:
        if self.redis_cluster_nodes and (self.redis_url or self.redis_sentinels):
            raise ValueError(
                "REDIS_CLUSTER_NODES: set one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES"
            )
        if self.redis_sentinels and self.redis_url:
            raise ValueError("REDIS_SENTINELS: set it or REDIS_URL, not both")
        if self.redis_cluster_nodes and self.scheduler_jobstore == "redis":
            raise ValueError(
                "SCHEDULER_JOBSTORE: APScheduler's Redis job store does not run on a Redis "
                "Cluster; use sqlalchemy (the default with REDIS_CLUSTER_NODES)"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS")
        for name, value in (
            ("REDIS_SENTINEL_MASTER", self.redis_sentinel_master),
            ("REDIS_SENTINEL_PASSWORD", self.redis_sentinel_password),
        ):
            if value is not None and not self.redis_sentinels:
                raise ValueError(f"{name}: only with REDIS_SENTINELS")
        if self.redis_password is not None and not (
            self.redis_sentinels or self.redis_cluster_nodes
        ):
            raise ValueError(
                "REDIS_PASSWORD: only with REDIS_SENTINELS or REDIS_CLUSTER_NODES (REDIS_URL "
                "carries its own)"
            )
        if self.redis_db and not self.redis_sentinels:
            raise ValueError(
                "REDIS_DB: only with REDIS_SENTINELS (REDIS_URL carries its own; a cluster has "
                "database 0 only)"
            )

    @property
    def redis_configured(self) -> bool:
        """Whether a shared Redis is configured (a server or a Sentinel-managed master)."""
        return bool(self.redis_url or self.redis_sentinels or self.redis_cluster_nodes)

    @property
    def redis_sentinel_addresses(self) -> list[tuple[str, int]]:
        """`REDIS_SENTINELS` as (host, port) pairs."""
        return _host_port_pairs(self.redis_sentinels)

    @property
    def redis_cluster_addresses(self) -> list[tuple[str, int]]:
        """`REDIS_CLUSTER_NODES` as (host, port) pairs."""
        return _host_port_pairs(self.redis_cluster_nodes)

    @property
    def effective_http_concurrency(self) -> int:
        """`HTTP_CONCURRENCY`, or by default the connections a worker's pool keeps open
        (`DB_POOL_SIZE`): more requests at once would open and close overflow connections."""
        if self.http_concurrency is not None:
            return self.http_concurrency
        return self.db_pool_size

    @property
    def tracing_enabled(self) -> bool:
        """Whether traces are exported: an OTLP endpoint is set and the SDK is not disabled
        (the OpenTelemetry specification's `OTEL_SDK_DISABLED`)."""
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a file-backed SQLite URL, else None."""
        if not self.is_sqlite:
            return None
        _, _, path = self.database_url.partition(":///")
        path = path.split("?", 1)[0]
        if not path or path == ":memory:":
            return None
        return Path(path)

    @property
    def effective_presence_backend(self) -> str:
        if self.presence_backend is not None:
            return self.presence_backend
        return "redis" if self.redis_configured else "memory"

    @property
    def secure_cookies(self) -> bool:
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.app_env == "production"

    @property
    def effective_scheduler_jobstore(self) -> str:
        if self.scheduler_jobstore is not None:
            return self.scheduler_jobstore
        if self.redis_cluster_nodes:
            return "sqlalchemy"  # APScheduler's Redis store needs one server (MULTI on 2 keys)
        return "redis" if self.redis_configured else "memory"

    @property
    def effective_scheduler_sqlalchemy_url(self) -> str:
        """`SCHEDULER_SQLALCHEMY_URL`, or the service's own database on its synchronous driver
        (PyMySQL, which aiomysql is built on; SQLite's built-in one)."""
        if self.scheduler_sqlalchemy_url:
            return self.scheduler_sqlalchemy_url
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        backend = url.get_backend_name()
        driver = "mysql+pymysql" if backend in ("mysql", "mariadb") else backend
        return url.set(drivername=driver).render_as_string(hide_password=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.display_timezone)


def _host_port_pairs(addresses: list[str]) -> list[tuple[str, int]]:
    pairs = [address.rpartition(":") for address in addresses]
    return [(host.strip("[]"), int(port)) for host, _, port in pairs]


def _job_problem(job: Any, location: tuple[Any, ...], message: str) -> str:
    """`field: message` for one error of a job definition (the union's tag, first in the
    location, is not a field; a model's own message already names its field)."""
    if location and isinstance(job, dict) and location[0] not in job:
        location = location[1:]
    message = message.removeprefix("Value error, ")
    name = field_name(location)
    return message if not name or message.startswith(f"{name}:") else f"{name}: {message}"


def describe_settings_error(error: ValidationError) -> str:
    """One line naming each bad variable: `SECRET_KEY: must be a random value of …`."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        variable = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(
            message if variable == "SETTINGS" or not item["loc"] else f"{variable}: {message}"
        )
    return "configuration error: " + "; ".join(problems)
