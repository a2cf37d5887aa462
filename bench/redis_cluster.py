"""A Redis Cluster of the benchmark's own: 3 masters on free loopback ports, created with
`redis-cli --cluster create`, removed at the end (data in a temporary folder, no persistence)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.servers import free_port


def _answers(port: int, *command: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, check=False
    ).stdout


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[str]:
    """Yields `REDIS_CLUSTER_NODES` (host:port,…) of a new cluster of `masters` nodes."""
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="qf-bench-cluster-") as folder:
        try:
            ports = []
            for _ in range(masters):
                port = free_port()
                data = Path(folder) / str(port)
                data.mkdir()
                command = [
                    "redis-server",
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(data),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(data / "nodes.conf"),
                    "--cluster-port", str(free_port()),
                ]  # fmt: skip
                processes.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
                ports.append(port)
            deadline = time.monotonic() + 30
            while not all(_answers(port, "ping").strip() == "PONG" for port in ports):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster's nodes did not start")
                time.sleep(0.05)
            addresses = [f"127.0.0.1:{port}" for port in ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
                check=True,
                capture_output=True,
            )
            while not all("cluster_state:ok" in _answers(p, "cluster", "info") for p in ports):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not become ready")
                time.sleep(0.05)
            yield ",".join(addresses)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)
