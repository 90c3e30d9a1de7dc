"""One request budget per host for the whole cluster, however many workers ask.

``RateLimiter`` is the pure algorithm: it hands out request slots spaced ``1/rate`` apart per
host, pauses a host for a cool-down when a block is reported and halves its rate, and (when
adaptive) probes back up towards the target while no block comes. ``grant`` hands out several
slots in one call, but never one more than ``HORIZON`` ahead: a task's dispatcher takes a few
requests' worth per round trip, and after a block no worker holds a slot for longer than that.

``rate`` 0 means no limit (hosts that owe none: a mirror, the emulator, your own bucket): slots
are handed out as fast as they are asked for, and what a task keeps in flight is bounded by its
``max_in_flight`` and by how fast the host answers. A block still pauses the host for the
cool-down, and the host then falls back to a finite rate: half the rate it was granted over the
last window before the block (``WINDOW`` s; at least ``min_rate``), the same "halve it" rule as
for a finite rate, applied to what was really sent. A 429 from an unlimited host (``throttled``)
sets the same finite rate without a pause. With ``adaptive`` the finite rate probes back up
(x1.25 per calm ``probe_every``) without a ceiling.

The Met's own hosts (``MET_HOSTS``) never go above ``MET_CEILING`` (its documented 80/s):
``check_rate`` refuses a faster or unlimited rate for them up front, and the limiter caps them
as a safety net for library callers.

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
from typing import Protocol

from distributed import get_client, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils import sync

from metdata.errors import UserError

log = logging.getLogger(__name__)

#: The Met's own hosts: its documented ceiling applies, and no limit is never allowed.
#: The Met's two hosts: its Collection API and the host of its images.
MET_API_HOST, MET_IMAGE_HOST = "collectionapi.metmuseum.org", "images.metmuseum.org"
MET_HOSTS = frozenset({MET_API_HOST, MET_IMAGE_HOST})
#: The Met's documented ceiling, requests/second per host ("Please limit request rate to 80 requests per second").
MET_CEILING = 80.0
#: Seconds over which an unlimited host's granted rate is measured (its fallback after a block is half of it).
WINDOW = 2.0

#: No slot is granted more than this many seconds ahead: after a block, every worker stops within it.
HORIZON = 1.0
#: One grant covers at most this many seconds of budget (one round trip per this many requests' worth).
SPAN = 0.25


@dataclass(frozen=True)
class PaceConfig:
    """The budget.

    Attributes:
        rate: requests/second per host for the whole cluster (the target); 0: no limit.
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
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"PaceConfig.{name} must be a finite number >= 0 (rate 0: no limit), not {value!r}")

    @property
    def unlimited(self) -> bool:
        """No rate limit: requests go as fast as tasks ask (bounded by what they keep in flight)."""
        return self.rate == 0


def host_name(key: str) -> str:
    """The host of a budget key (``host[:port]`` or ``images@host[:port]``), lower case.

    >>> host_name("images@images.metmuseum.org"), host_name("127.0.0.1:8080"), host_name("[::1]:80")
    ('images.metmuseum.org', '127.0.0.1', '::1')
    """
    netloc = key.rpartition("@")[2].lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.partition(":")[0]


def is_met_host(key: str) -> bool:
    """Whether a budget key or host is one of the Met's own (``MET_HOSTS``)."""
    return host_name(key) in MET_HOSTS


class RateRefused(UserError):
    """A rate the Met's hosts do not allow (above their ceiling, or no limit)."""


def check_rate(rate: float, hosts, option: str = "--rate") -> None:
    """Refuse ``rate`` if it is unlimited (0) or above ``MET_CEILING`` and one of ``hosts`` is the Met's
    (``option``: the command-line option the message names).

    >>> check_rate(0, ["127.0.0.1:8080"]); check_rate(80, ["images.metmuseum.org"])
    >>> check_rate(0, ["collectionapi.metmuseum.org"])
    Traceback (most recent call last):
    metdata.net.pacing.RateRefused: --rate 0 (no limit) is refused for collectionapi.metmuseum.org: ...

    Raises:
        RateRefused: naming the host, the reason and the fix.
    """
    if 0 < rate <= MET_CEILING:
        return
    met = sorted({host_name(h) for h in hosts if is_met_host(h)})
    if met:
        what = f"{option} 0 (no limit)" if rate == 0 else f"{option} {rate:g}"
        raise RateRefused(
            f"{what} is refused for {', '.join(met)}: the Met documents a ceiling of {MET_CEILING:g} requests/s "
            f"per host (and blocks this address for up to an hour when pushed; 1/s is the pace measured safe). "
            f"Give {option} between 0.01 and {MET_CEILING:g} for the Met, or point --api/--allow-host at a mirror "
            "or the emulator to go faster"
        )


@dataclass
class _Host:
    rate: float  # math.inf: no limit
    pause: float
    next_free: float = 0.0
    paused_until: float = 0.0
    last_change: float = 0.0
    requests: int = 0
    blocks: int = 0
    window_start: float = 0.0  # the granted rate, measured over WINDOW s (for an unlimited host's fallback)
    window_count: int = 0
    last_window_rate: float = 0.0

    def count(self, now: float, n: int) -> None:
        if now - self.window_start >= WINDOW:
            self.last_window_rate = self.window_count / (now - self.window_start)
            self.window_start, self.window_count = now, 0
        self.window_count += n

    def granted_rate(self, now: float) -> float:
        """Requests/s granted lately: over the current window (counted as at least a second long) or
        the last one, whichever is more."""
        current = self.window_count / max(1.0, now - self.window_start)
        return max(current, self.last_window_rate)


@dataclass
class RateLimiter:
    """Per-host slots spaced ``1/rate`` apart; thread-safe; the clock is injectable."""

    config: PaceConfig
    clock: Callable[[], float] = time.monotonic
    _hosts: dict[str, _Host] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _target(self, host: str) -> float:
        """The rate a host may reach: the configured one (inf: none), never above the Met's ceiling for its hosts."""
        target = self.config.rate or math.inf
        return min(target, MET_CEILING) if is_met_host(host) else target

    def _host(self, host: str, now: float) -> _Host:
        if host not in self._hosts:
            rate = self._target(host)
            if rate < (self.config.rate or math.inf):
                log.warning("%s is the Met's: its rate is capped at %.0f/s", host, MET_CEILING)
            self._hosts[host] = _Host(rate=rate, pause=self.config.cooldown, last_change=now, window_start=now)
        return self._hosts[host]

    def _fallback(self, state: _Host, now: float) -> float:
        """The lowered rate after a block or a 429: half the current one; an unlimited host's current
        one is what it was granted lately (at least ``min_rate``)."""
        current = state.rate if math.isfinite(state.rate) else state.granted_rate(now)
        return max(self.config.min_rate, current / 2)

    def _probe(self, host: str, now: float) -> _Host:
        """The host's state, its rate stepped up first if adaptive and calm long enough (under the lock)."""
        state = self._host(host, now)
        calm = now - state.last_change >= self.config.probe_every
        if self.config.adaptive and state.rate < self._target(host) and calm:
            state.rate = min(self._target(host), state.rate * 1.25)
            state.last_change = now
            log.info("no block for %.0fs on %s: rate up to %.3g/s", self.config.probe_every, host, state.rate)
        return state

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
            state.count(now, len(waits))
            return waits, 0.0

    def blocked(self, host: str) -> bool:
        """Report a block on ``host``: pause it for the cool-down and halve its rate.

        An unlimited host falls back to half the rate it was granted lately (``_fallback``).
        Reports that arrive while a pause is already in force belong to the same incident
        and change nothing. A block soon after a pause ended means the penalty outlasted it:
        the next pause doubles (up to an hour), since blocks last 40+ minutes for some IPs.
        Returns whether this report started a new pause.

        >>> clock = [0.0]
        >>> limiter = RateLimiter(PaceConfig(rate=4, cooldown=10), clock=lambda: clock[0])
        >>> next_slot = lambda: limiter.grant("api", 1, horizon=float("inf"))[0][0]
        >>> limiter.blocked("api"), next_slot()
        (True, 10.0)
        >>> clock[0] = 11.0; limiter.blocked("api"), next_slot()
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
            state.rate = self._fallback(state, now)
            state.last_change = state.paused_until
            log.warning(
                "blocked by %s: every worker pauses %.0f s, rate down to %.3g/s",
                host,
                state.pause,
                state.rate,
            )
            return True

    def throttled(self, host: str) -> bool:
        """Report a 429 from ``host``. An unlimited host falls back to a finite rate (``_fallback``, no
        pause); a finite one is unchanged (the request's own backoff suffices). Returns whether the
        rate changed.

        >>> clock = [0.0]
        >>> limiter = RateLimiter(PaceConfig(rate=0), clock=lambda: clock[0])
        >>> len(limiter.grant("mirror", 400)[0]); clock[0] = 1.0
        400
        >>> limiter.throttled("mirror"), limiter.stats()["mirror"]["rate"]
        (True, 200.0)
        """
        with self._lock:
            now = self.clock()
            state = self._host(host, now)
            if math.isfinite(state.rate):
                return False
            state.rate = self._fallback(state, now)
            state.last_change = now
            log.warning("%s answered 429 (too many requests): rate down to %.3g/s", host, state.rate)
            return True

    def stats(self) -> dict[str, dict[str, float | None]]:
        """Per host: current rate (None: no limit), slots handed out, blocks reported."""
        with self._lock:
            return {
                h: {"rate": s.rate if math.isfinite(s.rate) else None, "requests": s.requests, "blocks": s.blocks}
                for h, s in self._hosts.items()
            }


class Pacer(Protocol):
    """A task's handle on the budget: ``LocalPacer`` (one process) or ``SchedulerPacer`` (the cluster's)."""

    config: PaceConfig

    def bind(self) -> Pacer: ...
    def grant(self, host: str, n: int) -> tuple[list[float], float]: ...
    def blocked(self, host: str) -> None: ...
    def throttled(self, host: str) -> None: ...


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

    def throttled(self, host: str) -> None:
        """Report that ``host`` answered 429 (``RateLimiter.throttled``)."""
        self.limiter.throttled(host)

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
        scheduler.handlers["metdata_pace_throttled"] = lambda host: self.limiter.throttled(host)
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

    def throttled(self, host: str) -> None:
        """Report a 429 (``RateLimiter.throttled``)."""
        self._call("metdata_pace_throttled", host=host)

    def stats(self) -> dict:
        return self._call("metdata_pace_stats")
