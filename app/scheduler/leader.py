"""The leader loop: every tick, hold (or try to take) the lease, then run jobs only while this
worker leads and the shared state is `running`; every other worker keeps its scheduler paused.

On taking the lead, the stored jobs are screened first (app.scheduler.guard): a job that may not
run is paused and marked refused before the scheduler looks at it. Between ticks the scheduler
runs jobs only while the lease is surely held (`held_now`): a worker whose loop stalled past its
lease steps down at its next wake-up, before running anything.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.base import STATE_PAUSED

from app.metrics import SCHEDULER_LEADER, SCHEDULER_LEASE_EXPIRY
from app.scheduler.guard import GuardedScheduler
from app.scheduler.leadership import LocalLeadership, RedisLeadership
from app.scheduler.shared_state import RUNNING, SharedState

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class LeaderLoop:
    """Arguments: scheduler, started paused; leadership, the lease; state, the shared state;
    allowed_hosts, the hosts that may lead (`*`: any; SCHEDULER_ALLOWED_HOSTS)."""

    def __init__(
        self,
        scheduler: GuardedScheduler,
        leadership: RedisLeadership | LocalLeadership,
        state: SharedState,
        allowed_hosts: list[str],
        screen: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.leadership = leadership
        self.state = state
        self.screen = screen  # run on taking the lead, before any job runs
        scheduler.may_run = self.may_run
        self.host_name = socket.gethostname()
        self.allowed_hosts = allowed_hosts
        self.is_leader = False
        self.ticks = 0  # rounds completed: tests and operators can wait on progress
        self.attempts = 0  # lease attempts made (a host that may not lead makes none)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def may_run(self) -> bool:
        """Whether the scheduler may run jobs now: this worker leads and its lease surely holds.
        A lease found lapsed ends the leadership here (metric included), until a tick renews
        or retakes it."""
        if not self.is_leader:
            return False
        if self.leadership.held_now():
            return True
        log.warning("scheduler lease lapsed (the loop stalled?): stepping down")
        self.is_leader = False
        SCHEDULER_LEADER.set(0)
        SCHEDULER_LEASE_EXPIRY.set(0)
        self.scheduler.pause()
        return False

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
        SCHEDULER_LEASE_EXPIRY.set(0)

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
            if leads and self.screen is not None:
                try:
                    await self.screen()
                except Exception as error:  # a store that fails: try again next tick
                    log.warning("stored jobs not screened (%s)", type(error).__name__)
                    leads = should_run = False
        self.is_leader = leads
        SCHEDULER_LEADER.set(1 if leads else 0)
        SCHEDULER_LEASE_EXPIRY.set(self.leadership.held_until() if leads else 0)
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
