"""The leader loop: every tick, hold (or try to take) the lease, then run jobs only while this
worker leads and the shared state is `running`; every other worker keeps its scheduler paused."""

from __future__ import annotations

import asyncio
import logging
import socket

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED

from app.metrics import SCHEDULER_LEADER
from app.scheduler.leadership import LocalLeadership, RedisLeadership
from app.scheduler.shared_state import RUNNING, SharedState

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class LeaderLoop:
    """Arguments: scheduler, started paused; leadership, the lease; state, the shared state;
    allowed_hosts, the hosts that may lead (`*`: any; SCHEDULER_ALLOWED_HOSTS)."""

    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        leadership: RedisLeadership | LocalLeadership,
        state: SharedState,
        allowed_hosts: list[str],
    ) -> None:
        self.scheduler = scheduler
        self.leadership = leadership
        self.state = state
        self.host_name = socket.gethostname()
        self.allowed_hosts = allowed_hosts
        self.is_leader = False
        self.ticks = 0  # rounds completed: tests and operators can wait on progress
        self.attempts = 0  # lease attempts made (a host that may not lead makes none)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def host_allowed(self) -> bool:
        return "*" in self.allowed_hosts or self.host_name in self.allowed_hosts

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler-leadership")

    async def stop(self) -> None:
        """Stop ticking and give the lease back (bounded: Redis may be down)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # A Redis call cut by the cancellation may take a while to unwind.
            await asyncio.wait({self._task}, timeout=1)
        if self.is_leader:
            try:
                await asyncio.wait_for(self.leadership.release(), 1)
            except Exception as error:  # the lease then expires by itself
                log.warning("scheduler lease not released: %s", type(error).__name__)
        self.is_leader = False
        SCHEDULER_LEADER.set(0)

    async def tick(self) -> None:
        """One round: lease, state, then pause or resume this worker's scheduler."""
        try:
            leads = False
            if self.host_allowed:
                self.attempts += 1
                leads = await self.leadership.acquire_or_renew()
            should_run = leads and await self.state.get() == RUNNING
        except Exception as error:
            if self.is_leader:  # once per outage, not once a tick
                log.warning(
                    "scheduler leadership check failed (%s): stepping down", type(error).__name__
                )
            leads = should_run = False
        if self._stopping:  # a cancelled Redis call may return instead of raising
            return
        if leads != self.is_leader:
            log.info(
                "scheduler leadership %s by %s",
                "taken" if leads else "lost",
                self.leadership.identity,
            )
        self.is_leader = leads
        SCHEDULER_LEADER.set(1 if leads else 0)
        paused = self.scheduler.state == STATE_PAUSED
        if should_run and paused:
            self.scheduler.resume()
        elif not should_run and not paused:
            self.scheduler.pause()
        elif should_run:
            self.scheduler.wakeup()  # jobs may have been changed through another worker
        self.ticks += 1

    async def _run(self) -> None:
        while not self._stopping:
            await self.tick()
            await asyncio.sleep(TICK_SECONDS)
