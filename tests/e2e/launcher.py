"""Start `python -m app serve` without paying for its imports each time.

A server start used to spend about 1.1 s of CPU importing the workers' third-party packages in
its supervisor (app.supervisor.WORKER_PRELOAD) before forking its workers: about 100 starts a
run, a tenth of the suite's CPU. Here a multiprocessing fork server, one per pytest process,
imports them once; each server is forked from it and then runs exactly what `python -m app
serve` runs (app/__main__.py, with the command line, working directory, environment and output
`run_server` gives it). The supervisor finds those packages imported and forks its workers as
in production.

Left out of the preload: `prometheus_client`, which picks its multi-process value class from
`PROMETHEUS_MULTIPROC_DIR` when it is imported (the supervisor sets that variable first). A
child refuses to run if it finds it imported all the same: for one, multiprocessing imports
the parent's `__main__` again in each child (harmless under pytest), so a script of its own
that launches servers keeps its imports inside its `if __name__ == "__main__":` part.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import multiprocessing.process
import os
import runpy
import subprocess
import sys
from multiprocessing.context import ForkServerContext
from pathlib import Path

# Imported too late to be preloaded: they read the environment when imported.
READS_ENVIRONMENT_ON_IMPORT = frozenset({"prometheus_client"})


@functools.cache
def _fork_server() -> ForkServerContext:
    from app.supervisor import WORKER_PRELOAD

    context = multiprocessing.get_context("forkserver")
    # Not `__main__` (multiprocessing's default): pytest's own main would be imported again.
    # Nothing of the app's own either: each server imports it afresh, as `python -m app` does.
    preload = [name for name in WORKER_PRELOAD if name not in READS_ENVIRONMENT_ON_IMPORT]
    context.set_forkserver_preload([*preload, __name__])
    return context


def _serve(argv: list[str], cwd: str, env: dict[str, str], log_path: str) -> None:
    """In the forked child: become `python -m app <argv>` started in `cwd` with only `env`, its
    output appended to `log_path`."""
    loaded = READS_ENVIRONMENT_ON_IMPORT & sys.modules.keys()
    if loaded:  # a preloaded package imported one of them: the server would not be production's
        raise RuntimeError(f"imported before the environment was set: {sorted(loaded)}")
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(write_through=True)  # as PYTHONUNBUFFERED=1
    sys.argv = ["app", *argv]
    try:
        runpy.run_module("app", run_name="__main__", alter_sys=True)
    finally:
        atexit._run_exitfuncs()  # what the interpreter's exit would run (multiprocessing skips it)


class ServerProcess:
    """A server started by `launch`, with the parts of `subprocess.Popen` the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess, argv: list[str]) -> None:
        self._process = process
        self.args = ["python", "-m", "app", *argv]

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return None if self._process.is_alive() else self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, signal_number: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signal_number)

    def kill(self) -> None:
        self._process.kill()


def launch(argv: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> ServerProcess:
    """`python -m app <argv>` in `cwd` with the environment `env` (nothing else), stdout and
    stderr appended to `log_path`, forked from this pytest process's fork server."""
    process = _fork_server().Process(
        target=_serve, args=(argv, str(cwd), env, str(log_path)), name="app serve"
    )
    process.start()
    return ServerProcess(process, argv)
