"""Requests at the pace of the budget: each one goes out when its slot comes, however slow the others.

One ``Dispatcher`` per task runs many items (ids to look up, images to download) through one
attempt function each, possibly several times:

- **Slots decide when a request goes.** The dispatcher takes budget slots for its ready items
  (``Slots``: a few at a time from the pacer, never more than ``pacing.HORIZON`` ahead) and, at
  each slot's time, hands one item's attempt to a thread pool. So the requests in flight are
  what the pacer's rate and the answers' latency make them (Little's law: rate x latency), not a
  fixed number of threads: a slow answer holds one thread while the next slots go to others.
- **A bound, not a size.** ``in_flight_limit``: at most rate x timeout requests (every answer
  hanging to the timeout still leaves the rate whole), at most ``MAX_IN_FLIGHT`` per task; with
  no rate limit, ``UNLIMITED_IN_FLIGHT`` unless ``--max-in-flight`` says otherwise, and then the
  host's answers are the pace (backpressure). Threads are started only when no idle one is free,
  so a fast host uses a few.
- **Retries go back to the queue.** A ``transient`` outcome waits its backoff (exponential with
  jitter, at most 60 s) in a heap, holding no thread and no slot; a ``blocked`` one is reported to
  the pacer (every worker pauses), drops this task's held slots, and goes back to the ready queue:
  its next slot comes after the pause.
- **Nothing is lost.** Every item ends with its last status, value and attempt count; an attempt
  that raises ends its item ``failed`` with the exception (the caller turns it into a row).
- **The tail is handed on** (``late_after``). When nothing is left to send and every unresolved
  item is either waiting out a backoff that ends later than ``late_after`` s from now, or has been
  in flight longer than that (and longer than 3x the median answer so far: a slow host is not a
  late one), the run returns: those items come back ``late`` with their attempts so far (an
  abandoned request counts as one) and when they may go again (``due``), for a later task to
  retry. An item on its last attempt is waited for. So a task ends when its work is done, not
  when its slowest answer times out, and its thread goes to the next task. With
  ``hand_on_hanging``, requests hanging past that patience are also handed on mid-run whenever
  the in-flight bound holds ready items back (their threads wait out the deadline, at most
  ``MAX_IN_FLIGHT`` per run), so hanging answers do not fill the bound.

The dispatcher's loop runs in the calling thread (a Dask task's); it sleeps until the next slot,
backoff deadline or answer, and never polls.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from metdata.core.statuses import RETRYABLE, Status
from metdata.net.pacing import HORIZON, Pacer

log = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")

#: The most requests one task keeps in flight, whatever rate x timeout says (threads are cheap, not free).
MAX_IN_FLIGHT = 256

#: Requests one task keeps in flight when the rate is unlimited and ``--max-in-flight`` is not given.
UNLIMITED_IN_FLIGHT = 32

#: With no rate limit, a task takes this many slots per round trip to the pacer (they go stale after ``HORIZON``).
UNLIMITED_GRANT = 64

#: A transient failure's backoff never exceeds this (s).
MAX_BACKOFF = 60.0


def in_flight_limit(rate: float, timeout: float, cap: int = MAX_IN_FLIGHT) -> int:
    """The most requests in flight one task may need: every answer hanging ``timeout`` s at ``rate``/s;
    with no limit (``rate`` 0), ``UNLIMITED_IN_FLIGHT``.

    >>> in_flight_limit(80, 30), in_flight_limit(1.2, 30), in_flight_limit(0.05, 2), in_flight_limit(0, 30)
    (256, 36, 2, 32)
    """
    if rate == 0:
        return min(cap, UNLIMITED_IN_FLIGHT)
    return max(2, min(cap, math.ceil(rate * timeout)))


def backoff_delay(base: float, attempt: int, rng: random.Random) -> float:
    """Seconds before retry ``attempt`` + 1 of a transient failure: ``base`` doubling, at most 60 s, x0.5-1.5.

    >>> rng = random.Random(0)
    >>> [round(backoff_delay(2.0, k, rng), 2) for k in (1, 2, 8)]
    [2.69, 5.03, 55.23]
    """
    return min(MAX_BACKOFF, base * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.5)


@dataclass
class Slots:
    """This task's granted budget slots, per host, as local ``clock()`` times; thread-safe.

    ``take`` asks the pacer for up to ``want`` slots at once (one round trip for several
    requests); the pacer grants only slots within its horizon, so what a task holds is never more
    than about a second of budget, and a block stops every worker within that second. With no
    rate limit (the pacer's ``config.rate`` 0) it asks for ``UNLIMITED_GRANT`` at a time and drops
    what it still holds after ``HORIZON`` s, so a block elsewhere still stops it within that.
    """

    pacer: Pacer
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _held: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    grants: int = 0  # round trips to the pacer that granted slots (for the summary)

    @property
    def unlimited(self) -> bool:
        config = getattr(self.pacer, "config", None)
        return config is not None and config.rate == 0

    def next(self, host: str, want: int = 1) -> tuple[float | None, float]:
        """(the time of this host's next held slot, or None; when to ask again if none was granted)."""
        unlimited = self.unlimited
        with self._lock:
            held = self._held.setdefault(host, deque())
            if held and unlimited and held[0] < self.clock() - HORIZON:
                held.clear()  # stale: a block may have come meanwhile
            if held:
                return held[0], 0.0
        waits, retry = self.pacer.grant(host, max(1, want, UNLIMITED_GRANT if unlimited else 1))
        now = self.clock()
        with self._lock:
            if waits:
                self.grants += 1
                self._held[host].extend(now + w for w in waits)
                return self._held[host][0], 0.0
        return None, now + retry

    def pop(self, host: str) -> None:
        """Use the next held slot of ``host`` (the one ``next`` returned)."""
        with self._lock:
            held = self._held.get(host)
            if held:  # a redirect hop (``wait``) or a block (``forget``) may have taken it meanwhile
                held.popleft()

    def wait(self, host: str) -> None:
        """Block until this caller may send one request to ``host`` (a redirect hop, from any thread)."""
        while True:
            with self._lock:
                held = self._held.setdefault(host, deque())
                at = held.popleft() if held else None
            if at is None:
                at, again = self.next(host)
                if at is None:
                    self.sleep(max(0.0, again - self.clock()))
                    continue
                self.pop(host)
            self.sleep(max(0.0, at - self.clock()))
            return

    def forget(self, host: str) -> None:
        """Drop the held slots of ``host`` (it blocked us: they were granted before the pause)."""
        with self._lock:
            self._held.pop(host, None)


@dataclass
class Done(Generic[V]):
    """What became of one item: its last status and value, how many attempts, and an exception
    if an attempt raised (then ``status`` is ``failed``)."""

    status: str
    value: V | None
    attempts: int
    error: BaseException | None = None
    late: bool = False  # handed on (``late_after``): retry it from another task, not before ``due``
    due: float = 0.0  # seconds from the run's end until it may be tried again (when late)


@dataclass
class Figures:
    """How a dispatcher's run went, for the run summary."""

    requests: int = 0
    peak_in_flight: int = 0
    busy_s: float = 0.0  # summed request time: busy_s / wall time = mean requests in flight
    grants: int = 0


@dataclass
class Dispatcher:
    """Run items through ``attempt`` at the budget's pace; see the module docstring.

    Attributes:
        slots: the budget (shared by every request of this task).
        max_in_flight: the bound on concurrent attempts (``in_flight_limit``).
        max_attempts: attempts per item before a retryable outcome is final for this run.
        backoff: base seconds of a transient failure's backoff.
        throttled: whether an attempt's value says the host answered 429 (too many requests): then
            the pacer is told (``pacing.RateLimiter.throttled``: an unlimited host slows down).
        late_after: hand the tail on after this many seconds of only waiting (see the module
            docstring); None: wait for every item.
        hand_on_hanging: with ``late_after``, also mid-run: while the in-flight bound holds ready
            items back, a request in flight past the same patience is handed on at once and stops
            counting against the bound (its thread waits out its deadline; at most
            ``MAX_IN_FLIGHT`` such per run), so answers that hang (a fault mix with no rate limit)
            do not stall the others.
    """

    slots: Slots
    max_in_flight: int
    max_attempts: int
    backoff: float
    seed: int | None = None
    figures: Figures = field(default_factory=Figures)
    throttled: Callable[[object], bool] | None = None
    late_after: float | None = None
    hand_on_hanging: bool = False

    @property
    def threads(self) -> int:
        """The most threads a run may hold: the bound, plus the requests handed on while hanging."""
        return self.max_in_flight + (MAX_IN_FLIGHT if self.hand_on_hanging and self.late_after is not None else 0)

    def run(
        self,
        items: Sequence[T],
        host_of: Callable[[T], str],
        attempt: Callable[[T], tuple[str, V]],
        tries: Sequence[int] | None = None,
        finished: Callable[[int], None] | None = None,
    ) -> list[Done[V]]:
        """Attempt every item until its status is final or its attempts are spent; results in order.

        ``attempt(item)`` sends one request (its slot already taken: redirect hops take theirs with
        ``slots.wait``) and returns ``(status, value)``, ``status`` an ``Status`` value. ``tries``:
        attempts each item already had (in an earlier task). ``finished(i)`` is called as each item
        ends (not when handed on), from this thread. With ``late_after``, items may come back
        ``late`` (see the module docstring).
        """
        clock, rng = self.slots.clock, random.Random(self.seed)
        results: list[Done[V] | None] = [None] * len(items)
        tries = list(tries) if tries is not None else [0] * len(items)
        last: list[tuple[str, V | None]] = [(Status.TRANSIENT.value, None)] * len(items)
        ready: deque[int] = deque(range(len(items)))
        backing_off: list[tuple[float, int]] = []  # (not before, item)
        answers: queue.SimpleQueue = queue.SimpleQueue()
        in_flight, unresolved, retry_at = 0, len(items), 0.0
        sent_at: dict[int, float] = {}  # item -> when its request went (while in flight)
        hanging: set[int] = set()  # items handed on mid-run whose request still holds a thread
        took_all: list[float] = []

        def send(i: int) -> None:
            started = time.perf_counter()
            try:
                status, value = attempt(items[i])
                answers.put((i, status, value, None, time.perf_counter() - started))
            except Exception as exc:  # the caller names it in the item's row; the others go on
                answers.put((i, Status.FAILED.value, None, exc, time.perf_counter() - started))

        def end(i: int, done: Done) -> None:
            nonlocal unresolved
            results[i] = done
            unresolved -= 1
            if finished is not None and not done.late:
                finished(i)

        def release(now: float) -> float:
            """Hand on the requests hanging past the patience (``hand_on_hanging``); when to look again."""
            nonlocal in_flight
            wait = max(self.late_after, 3 * sorted(took_all)[len(took_all) // 2]) if took_all else self.late_after
            again = math.inf
            for i, at in list(sent_at.items()):
                if tries[i] + 1 >= self.max_attempts:
                    continue  # its last attempt: waited for
                if at + wait > now:
                    again = min(again, at + wait)
                elif len(hanging) < self.threads - self.max_in_flight:
                    del sent_at[i]
                    in_flight -= 1
                    hanging.add(i)
                    end(i, Done(Status.TRANSIENT.value, last[i][1], tries[i] + 1, late=True, due=0.0))
            return again

        def hand_on(now: float) -> tuple[bool, float]:
            """(whether the rest is a tail to hand on, when to look again); if it is, end those items
            late (``late_after``)."""
            if self.late_after is None or ready or not unresolved:
                return False, math.inf
            patience = self.late_after
            if took_all:
                patience = max(patience, 3 * sorted(took_all)[len(took_all) // 2])
            becomes_late = [at + patience for i, at in sent_at.items() if tries[i] + 1 < self.max_attempts]
            again = min((t for t in becomes_late if t > now), default=math.inf)
            if len(becomes_late) < len(sent_at) or again < math.inf:
                return False, again  # an answer may still come in time, or it is an item's last attempt
            if any(not_before <= now + patience for not_before, _ in backing_off):
                return False, again  # a retry is due soon: cheaper to wait here than in another task
            for i in sent_at:  # abandoned: the request counts as an attempt; its answer is ignored
                error = f"no answer within {now - sent_at[i]:.1f} s: handed on to a later task"
                end(i, Done(Status.TRANSIENT.value, last[i][1], tries[i] + 1, late=True, due=0.0))
                log.debug("item %s: %s", items[i], error)
            for not_before, i in backing_off:
                end(i, Done(last[i][0], last[i][1], tries[i], late=True, due=max(0.0, not_before - now)))
            return True, math.inf

        def settle(answer: tuple) -> None:
            nonlocal in_flight
            i, status, value, error, took = answer
            if i not in sent_at or results[i] is not None:
                hanging.discard(i)  # the answer of a request handed on meanwhile: its thread is free
                return
            in_flight -= 1
            del sent_at[i]
            tries[i] += 1
            last[i] = (status, value)
            self.figures.busy_s += took
            took_all.append(took)
            if status in RETRYABLE and error is None and tries[i] < self.max_attempts:
                if status == Status.BLOCKED.value:
                    host = host_of(items[i])
                    self.slots.pacer.blocked(host)  # every worker pauses
                    self.slots.forget(host)
                    ready.appendleft(i)
                else:
                    if self.throttled is not None and self.throttled(value):
                        self.slots.pacer.throttled(host_of(items[i]))
                    heapq.heappush(backing_off, (clock() + backoff_delay(self.backoff, tries[i], rng), i))
                return
            end(i, Done(status, value, tries[i], error))

        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="metdata-request")
        try:
            while unresolved:
                now = clock()
                while backing_off and backing_off[0][0] <= now:  # a retry goes first: its chain ends sooner
                    ready.appendleft(heapq.heappop(backing_off)[1])
                handed_on, look_again = hand_on(now)
                if handed_on:
                    break
                wake = min(backing_off[0][0] if backing_off else math.inf, look_again)
                if ready and in_flight < self.max_in_flight and now >= retry_at:
                    host = host_of(items[ready[0]])
                    at, again = self.slots.next(host, want=min(len(ready), self.max_in_flight - in_flight))
                    if at is None:
                        retry_at = again  # the pacer's horizon is full (or a pause): ask again then
                        wake = min(wake, again)
                    elif at <= clock():
                        self.slots.pop(host)
                        in_flight += 1
                        self.figures.requests += 1
                        self.figures.peak_in_flight = max(self.figures.peak_in_flight, in_flight)
                        i = ready.popleft()
                        sent_at[i] = clock()
                        pool.submit(send, i)
                        continue
                    else:
                        wake = min(wake, at)
                elif ready and in_flight < self.max_in_flight:
                    wake = min(wake, retry_at)
                elif ready and self.threads > self.max_in_flight:  # the bound holds them back: hanging ones?
                    wake = min(wake, release(now))
                    if in_flight < self.max_in_flight:
                        continue
                timeout = None if wake == math.inf else max(0.0, wake - clock())
                if in_flight == 0:  # nothing can answer: just sleep until the slot or deadline
                    self.slots.sleep(timeout or 0.0)
                    continue
                try:
                    settle(answers.get(timeout=timeout))
                except queue.Empty:
                    continue
                while True:  # every answer that came meanwhile
                    try:
                        settle(answers.get_nowait())
                    except queue.Empty:
                        break
        finally:  # requests handed on end in their own time (their deadline); nobody waits for them
            pool.shutdown(wait=not sent_at and not hanging, cancel_futures=True)
        self.figures.grants = self.slots.grants
        return results  # type: ignore[return-value]


def is_429(value: object) -> bool:
    """Whether an attempt's value (an ``Answer`` or an ``images.Fetched``) is a 429 answer."""
    return getattr(value, "error", "") == "HTTP 429"


def paid_first(slots: Slots, key_of: Callable[[str], str]) -> Callable[[str], None]:
    """``fetch``'s ``wait`` for a request whose slot the dispatcher already took: later hops
    (redirects) each take a slot of their own, from the budget ``key_of(url)``."""
    hops = iter(range(1 << 30))

    def wait(url: str) -> None:
        if next(hops):
            slots.wait(key_of(url))

    return wait


@dataclass(frozen=True)
class Tuning:
    """How requests are sent, whatever they ask for (API lookups, image downloads).

    Attributes:
        max_in_flight: the most requests one task keeps in flight; 0 sizes it to the budget
            (``in_flight_limit``: rate x timeout, at most 256; 32 with no rate limit). How many
            are really in flight is rate x latency: the bound matters only when answers hang,
            or when the rate is unlimited (then it and the host's answers are the pace).
        timeout: seconds for a whole request (connect and every read) before it counts as a
            transient failure.
        max_attempts: attempts per item before a transient or blocked outcome is final for this run.
        backoff: base seconds of the exponential backoff after a transient failure.
    """

    max_in_flight: int = 0
    timeout: float = 30.0
    max_attempts: int = 5
    backoff: float = 2.0

    def dispatcher(self, pacer: Pacer, items: int) -> Dispatcher:
        """A dispatcher for ``items`` requests at the pacer's rate, with these limits."""
        limit = self.max_in_flight or in_flight_limit(pacer.config.rate, self.timeout)
        return Dispatcher(Slots(pacer), max(1, min(limit, items)), self.max_attempts, self.backoff, throttled=is_429)
