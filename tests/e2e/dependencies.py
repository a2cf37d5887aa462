"""Throwaway `redis-server` and `mariadbd` processes for fault tests.

Each runs from a data directory under the test's temporary folder, on a free loopback port,
and is the only server a fault test stops, hangs (SIGSTOP/SIGCONT), kills or restarts: the
shared servers on 3306 and 6379 are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.server import free_port

START_TIMEOUT = 30.0


def _wait_until(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start in {timeout} s")
        time.sleep(0.05)


@dataclass
class OwnServer:
    """A server process this test owns. `start()` (again) after `kill()` restarts it on the
    same port and data directory."""

    name: str
    command: list[str]
    port: int
    ready_command: list[str]
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_until(self._answers, START_TIMEOUT, self.name)
        self.history.append("started")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
        return subprocess.run(self.ready_command, capture_output=True).returncode == 0

    def hang(self) -> None:
        """SIGSTOP: the process keeps its sockets open and answers nothing."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self.history.append("hung")

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.history.append("resumed")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.history.append("killed")

    def sql(self, statement: str) -> str:
        """Run `statement` with the mysql client (a mariadbd of this test); its tab-separated
        output without headers."""
        return subprocess.run(
            [
                "mysql",
                "--protocol=tcp",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-uroot",
                "-N",
                "-B",
                "-e",
                statement,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[OwnServer]:
    """A redis-server of this test, no persistence, on a free port."""
    port = free_port()
    data = tmp_path / f"redis-{port}"
    data.mkdir()
    server = _redis_server(data, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def own_mariadb(tmp_path: Path) -> Iterator[OwnServer]:
    """A mariadbd of this test: a fresh data directory (root, empty password), a free port."""
    port = free_port()
    base = tmp_path / f"mariadb-{port}"
    base.mkdir()
    # A temporary directory of its own: bootstraps run at once share /tmp's temporary table
    # names, and one of them fails ("Unknown table 'mysql.tmp_user_sys'").
    (base / "tmp").mkdir()
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={base / 'data'}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "TMPDIR": str(base / "tmp")},
    )
    server = OwnServer(
        name="mariadbd",
        command=[
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={base / 'data'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={base / 'sock'}",
            f"--pid-file={base / 'pid'}",
            f"--tmpdir={base / 'tmp'}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--skip-name-resolve",
            f"--log-error={base / 'error.log'}",
        ],
        port=port,
        ready_command=[
            "mysqladmin",
            "--protocol=tcp",
            "-h127.0.0.1",
            f"-P{port}",
            "-uroot",
            "ping",
        ],
        log_path=base / "stdout.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _redis_server(data: Path, port: int, *extra: str) -> OwnServer:
    return OwnServer(
        name=f"redis-server:{port}",
        command=[
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--daemonize",
            "no",
            *extra,
        ],
        port=port,
        ready_command=["redis-cli", "-p", str(port), "ping"],
        log_path=data / "redis.log",
    )


def redis_cli(port: int, *arguments: str) -> str:
    """`redis-cli -p port arguments…`, its output."""
    return subprocess.run(
        ["redis-cli", "-p", str(port), *arguments], check=True, capture_output=True, text=True
    ).stdout


@dataclass
class SentinelGroup:
    """A master, its replicas and the sentinels watching them, all of this test."""

    master_name: str
    servers: list[OwnServer]  # the master first, then the replicas
    sentinels: list[OwnServer]
    down_after_ms: int

    @property
    def sentinel_addresses(self) -> str:
        """`REDIS_SENTINELS`: host:port,host:port,…"""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers sees it now."""
        for sentinel in self.sentinels:
            with contextlib.suppress(subprocess.CalledProcessError):
                lines = redis_cli(
                    sentinel.port, "sentinel", "get-master-addr-by-name", self.master_name
                ).split()
                if len(lines) == 2:
                    return int(lines[1])
        raise AssertionError("no sentinel names a master")

    def master(self) -> OwnServer:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def settled(self) -> bool:
        """Every sentinel knows the master, every replica and the other sentinels, and every
        replica is in sync: a failover can happen."""
        master = self.master_port()
        for sentinel in self.sentinels:
            known = redis_cli(
                sentinel.port, "sentinel", "get-master-addr-by-name", self.master_name
            )
            if str(master) not in known.split():
                return False
            replicas = redis_cli(sentinel.port, "sentinel", "replicas", self.master_name)
            if replicas.count("flags") < len(self.servers) - 1 or "s_down" in replicas:
                return False
            others = redis_cli(sentinel.port, "sentinel", "sentinels", self.master_name)
            if others.count("flags") < len(self.sentinels) - 1:
                return False
        return all(
            "master_link_status:up" in redis_cli(server.port, "info", "replication")
            for server in self.servers
            if server.port != master and server.process.poll() is None
        )


@contextmanager
def own_sentinel_group(
    tmp_path: Path, *, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000
) -> Iterator[SentinelGroup]:
    """A master with `replicas` replicas and `sentinels` sentinels (quorum: a majority),
    failing over `down_after_ms` after the master stops answering; started and settled."""
    started: list[OwnServer] = []
    try:
        master_port = free_port()
        data = tmp_path / f"redis-{master_port}"
        data.mkdir()
        master = _redis_server(data, master_port)
        master.start()
        started.append(master)
        group = SentinelGroup("quart-master", [master], [], down_after_ms)
        for _ in range(replicas):
            port = free_port()
            data = tmp_path / f"redis-{port}"
            data.mkdir()
            replica = _redis_server(data, port, "--replicaof", "127.0.0.1", str(master_port))
            replica.start()
            started.append(replica)
            group.servers.append(replica)
        for _ in range(sentinels):
            port = free_port()
            data = tmp_path / f"sentinel-{port}"
            data.mkdir()
            config = data / "sentinel.conf"  # the sentinel rewrites it: its own copy
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {data}\n"
                f"sentinel monitor {group.master_name} 127.0.0.1 {master_port} "
                f"{sentinels // 2 + 1}\n"
                f"sentinel down-after-milliseconds {group.master_name} {down_after_ms}\n"
                f"sentinel failover-timeout {group.master_name} 10000\n"
                f"sentinel parallel-syncs {group.master_name} 1\n"
            )
            sentinel = OwnServer(
                name=f"redis-sentinel:{port}",
                command=["redis-server", str(config), "--sentinel"],
                port=port,
                ready_command=["redis-cli", "-p", str(port), "ping"],
                log_path=data / "sentinel.log",
            )
            sentinel.start()
            started.append(sentinel)
            group.sentinels.append(sentinel)
        _wait_until(group.settled, 60, "the sentinel group")
        yield group
    finally:
        for server in reversed(started):
            server.stop()


@dataclass
class ClusterGroup:
    """Redis Cluster masters of this test."""

    nodes: list[OwnServer]

    @property
    def node_addresses(self) -> str:
        """`REDIS_CLUSTER_NODES`: host:port,host:port,…"""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)


@contextmanager
def own_redis_cluster(tmp_path: Path, *, masters: int = 3) -> Iterator[ClusterGroup]:
    """`masters` cluster-enabled redis-servers joined with `redis-cli --cluster create`."""
    nodes: list[OwnServer] = []
    try:
        for _ in range(masters):
            port = free_port()
            data = tmp_path / f"cluster-{port}"
            data.mkdir()
            node = _redis_server(
                data,
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(data / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                # The bus port (default: port + 10000) must be free and below 65536 too.
                "--cluster-port",
                str(free_port()),
            )
            node.start()
            nodes.append(node)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{node.port}" for node in nodes],
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )
        _wait_until(
            lambda: all(
                "cluster_state:ok" in redis_cli(node.port, "cluster", "info") for node in nodes
            ),
            60,
            "the cluster",
        )
        yield ClusterGroup(nodes)
    finally:
        for node in reversed(nodes):
            node.stop()
