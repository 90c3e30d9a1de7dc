"""One request budget per host for the whole cluster, however many workers ask.

``RateLimiter`` is the pure algorithm: it hands out request slots spaced ``1/rate`` apart per
host, pauses a host for a cool-down when a block is reported and halves its rate, and (when
adaptive) probes back up towards the target while no block comes. ``grant`` hands out several
slots in one call, but never one more than ``HORIZON`` ahead: a task's dispatcher takes a few
requests' worth per round trip, and after a block no worker holds a slot for longer than that.

Two front ends share it:

- ``LocalPacer``: in this process, for single-process use and tests of the algorithm;
- ``SchedulerPacer``: the limiter lives in the Dask scheduler (``PacerPlugin`` adds its
  handlers there) and a task asks it for slots with one RPC per batch. State on the scheduler
  outlives any worker, so a killed worker loses no budget bookkeeping.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from distributed import get_client, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils import sync

log = logging.getLogger(__name__)

#: No slot is granted more than this many seconds ahead: after a block, every worker stops within it.
HORIZON = 1.0
#: One grant covers at most this many seconds of budget (one round trip per this many requests' worth).
SPAN = 0.25


@dataclass(frozen=True)
class PaceConfig:
    """The budget.

    Attributes:
        rate: requests/second per host for the whole cluster (the target).
        adaptive: after a block, probe back up towards ``rate`` while no block comes.
        cooldown: seconds every request to a host waits after a block is reported.
        min_rate: the rate never drops below this.
        probe_every: with ``adaptive``, seconds without a block before each step up (x1.25).
    """

    rate: float = 1.0
    adaptive: bool = False
    cooldown: float = 120.0
    min_rate: float = 0.05
    probe_every: float = 300.0

    def __post_init__(self) -> None:
        # nan passes every comparison and switches pacing off: refuse it for library callers too
        for name in ("rate", "cooldown", "min_rate", "probe_every"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "rate" and value <= 0):
                raise ValueError(f"PaceConfig.{name} must be a finite number >= 0 (rate > 0), not {value!r}")


@dataclass
class _Host:
    rate: float
    pause: float
    next_free: float = 0.0
    paused_until: float = 0.0
    last_change: float = 0.0
    requests: int = 0
    blocks: int = 0


@dataclass
class RateLimiter:
    """Per-host slots spaced ``1/rate`` apart; thread-safe; the clock is injectable."""

    config: PaceConfig
    clock: Callable[[], float] = time.monotonic
    _hosts: dict[str, _Host] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _host(self, host: str, now: float) -> _Host:
        if host not in self._hosts:
            self._hosts[host] = _Host(rate=self.config.rate, pause=self.config.cooldown, last_change=now)
        return self._hosts[host]

    def _probe(self, host: str, now: float) -> _Host:
        """The host's state, its rate stepped up first if adaptive and calm long enough (under the lock)."""
        state = self._host(host, now)
        calm = now - state.last_change >= self.config.probe_every
        if self.config.adaptive and state.rate < self.config.rate and calm:
            state.rate = min(self.config.rate, state.rate * 1.25)
            state.last_change = now
            log.info("no block for %.0fs on %s: rate up to %.3g/s", self.config.probe_every, host, state.rate)
        return state

    def reserve(self, host: str) -> float:
        """Reserve the next request slot for ``host``; return how long to wait for it (s).

        >>> limiter = RateLimiter(PaceConfig(rate=2.0), clock=lambda: 10.0)
        >>> [limiter.reserve("api") for _ in range(3)]
        [0.0, 0.5, 1.0]
        """
        with self._lock:
            now = self.clock()
            state = self._probe(host, now)
            slot = max(now, state.next_free, state.paused_until)
            state.next_free = slot + 1.0 / state.rate
            state.requests += 1
            return slot - now

    def grant(self, host: str, n: int, horizon: float = HORIZON, span: float = SPAN) -> tuple[list[float], float]:
        """Grant up to ``n`` consecutive slots of ``host`` (at most ``span`` s of budget, at least one),
        none more than ``horizon`` s ahead; return their waits (s) and, when none could be granted,
        how long to wait before asking again.

        >>> limiter = RateLimiter(PaceConfig(rate=8.0), clock=lambda: 10.0)
        >>> limiter.grant("api", 5)  # a quarter of a second of budget per call
        ([0.0, 0.125, 0.25], 0.0)
        >>> limiter.grant("api", 100, horizon=0.5)
        ([0.375, 0.5], 0.0)
        >>> limiter.grant("api", 1, horizon=0.5)  # the horizon is full: come back in 1/8 s
        ([], 0.125)
        """
        with self._lock:
            now = self.clock()
            state = self._probe(host, now)
            first = max(now, state.next_free, state.paused_until)
            if first - now > horizon:
                return [], first - now - horizon
            waits, slot = [], first
            while len(waits) < max(1, n) and slot - now <= horizon and slot - first <= span:
                waits.append(slot - now)
                slot += 1.0 / state.rate
            state.next_free = slot
            state.requests += len(waits)
            return waits, 0.0

    def blocked(self, host: str) -> bool:
        """Report a block on ``host``: pause it for the cool-down and halve its rate.

        Reports that arrive while a pause is already in force belong to the same incident
        and change nothing. A block soon after a pause ended means the penalty outlasted it:
        the next pause doubles (up to an hour), since blocks last 40+ minutes for some IPs.
        Returns whether this report started a new pause.

        >>> clock = [0.0]
        >>> limiter = RateLimiter(PaceConfig(rate=4, cooldown=10), clock=lambda: clock[0])
        >>> limiter.blocked("api"), limiter.reserve("api")
        (True, 10.0)
        >>> clock[0] = 11.0; limiter.blocked("api"), limiter.reserve("api")
        (True, 20.0)
        """
        with self._lock:
            now = self.clock()
            state = self._host(host, now)
            if now < state.paused_until:
                return False
            soon_after = state.blocks and now - state.paused_until < state.pause
            state.pause = min(3600.0, state.pause * 2) if soon_after else self.config.cooldown
            state.blocks += 1
            state.paused_until = now + state.pause
            state.next_free = max(state.next_free, state.paused_until)
            state.rate = max(self.config.min_rate, state.rate / 2)
            state.last_change = state.paused_until
            log.warning(
                "blocked by %s: every worker pauses %.0f s, rate down to %.3g/s",
                host,
                state.pause,
                state.rate,
            )
            return True

    def stats(self) -> dict[str, dict[str, float]]:
        """Per host: current rate, slots handed out, blocks reported."""
        with self._lock:
            return {h: {"rate": s.rate, "requests": s.requests, "blocks": s.blocks} for h, s in self._hosts.items()}


class LocalPacer:
    """A pacer for one process: waits in the calling thread."""

    def __init__(self, config: PaceConfig) -> None:
        self.config = config
        self.limiter = RateLimiter(config)

    def bind(self) -> LocalPacer:
        return self

    def grant(self, host: str, n: int) -> tuple[list[float], float]:
        """Up to ``n`` slots of ``host`` (``RateLimiter.grant``)."""
        return self.limiter.grant(host, n)

    def blocked(self, host: str) -> None:
        """Report that ``host`` answered with a block."""
        self.limiter.blocked(host)

    def stats(self) -> dict:
        return self.limiter.stats()


# -- On a Dask cluster -------------------------------------------------------------------------

PLUGIN_NAME = "metdata-pacer"


class PacerPlugin(SchedulerPlugin):
    """A scheduler plugin holding the cluster's ``RateLimiter``; register it with
    ``client.register_plugin(PacerPlugin(config), name=PLUGIN_NAME)``. Registering again (a new
    run) replaces the limiter with a fresh one.
    """

    def __init__(self, config: PaceConfig) -> None:
        self.config = config
        self.limiter: RateLimiter | None = None

    async def start(self, scheduler) -> None:
        self.limiter = RateLimiter(self.config)
        scheduler.handlers["metdata_pace_grant"] = lambda host, n: self.limiter.grant(host, n)
        scheduler.handlers["metdata_pace_blocked"] = lambda host: self.limiter.blocked(host)
        scheduler.handlers["metdata_pace_stats"] = lambda: self.limiter.stats()


class SchedulerPacer:
    """The task-side handle of the scheduler's limiter. Pickles to any worker.

    Call ``bind()`` in the task's own thread (or on the client) before handing the pacer to
    other threads: Dask's worker context is thread-local.
    """

    def __init__(self, config: PaceConfig | None = None) -> None:
        self.config = config or PaceConfig()  # the target rate, for sizing what a task keeps in flight
        self._scheduler = self._loop = None

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def bind(self) -> SchedulerPacer:
        """Capture the connection to the scheduler from this thread; return self."""
        try:
            worker = get_worker()
            self._scheduler, self._loop = worker.scheduler, worker.loop
        except ValueError:  # on the client, not in a task
            client = get_client()
            self._scheduler, self._loop = client.scheduler, client.loop
        return self

    def _call(self, handler: str, **kwargs):
        if self._scheduler is None:
            self.bind()
        return sync(self._loop, getattr(self._scheduler, handler), **kwargs)

    def grant(self, host: str, n: int) -> tuple[list[float], float]:
        """Up to ``n`` slots of ``host`` from the cluster's budget, in one round trip (``RateLimiter.grant``)."""
        waits, retry = self._call("metdata_pace_grant", host=host, n=n)
        return list(waits), retry

    def blocked(self, host: str) -> None:
        """Report a block: every worker pauses for the cool-down."""
        self._call("metdata_pace_blocked", host=host)

    def stats(self) -> dict:
        return self._call("metdata_pace_stats")
