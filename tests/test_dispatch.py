"""Requests at the budget's pace: slots, the horizon, and what a slow answer or a backoff may not hold.

The waits here are events, not timings: a test that would hang on the old design (a fixed pool
of threads sleeping through backoffs and slow answers) fails on a generous bound instead.
"""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from metdata.acquire.lookup import LookupOptions, lookup_batch
from metdata.core.statuses import Status
from metdata.net.dispatch import UNLIMITED_IN_FLIGHT, Dispatcher, Slots, in_flight_limit
from metdata.net.pacing import HORIZON, LocalPacer, PaceConfig, RateLimiter

NO_HANG = 30.0  # seconds an event may take before the test calls it a hang


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_no_slot_is_granted_beyond_the_horizon_so_a_block_stops_everyone_within_it():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=40.0, cooldown=30), clock=clock)
    granted = []
    for _ in range(10):  # several workers asking at once: the horizon fills, then they must wait
        waits, again = limiter.grant("api", 100)
        granted += [clock.now + w for w in waits]
        if not waits:
            assert again > 0
    assert 40 <= len(granted) <= 41 and max(granted) <= clock.now + HORIZON  # 1 s of budget, not a slot more
    clock.now += 0.5
    limiter.blocked("api")
    assert max(granted) <= clock.now + HORIZON  # what workers still hold ends within a second of the block
    waits, again = limiter.grant("api", 1)
    assert waits == [] and again == pytest.approx(30 - HORIZON)  # nothing more until the pause ends


def test_the_dispatcher_sends_each_request_at_its_slot_and_never_before():
    clock = Clock()
    sent: list[float] = []

    class Recorded(Slots):
        def pop(self, host: str) -> None:
            sent.append(clock())
            super().pop(host)

    pacer = LocalPacer(PaceConfig(rate=20.0))
    pacer.limiter.clock = clock
    dispatcher = Dispatcher(Recorded(pacer, clock=clock, sleep=clock.sleep), 8, 3, 0.1)
    done = dispatcher.run(list(range(60)), lambda _: "api", lambda i: (Status.OK, i))
    assert [d.value for d in done] == list(range(60)) and {d.attempts for d in done} == {1}
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) == pytest.approx(1 / 20) and len(sent) == 60  # the rate, exactly, on this clock
    assert dispatcher.figures.grants < 60 / 4  # several slots per round trip to the pacer


def run_with_events(max_in_flight: int, attempt, items: int = 20):
    pacer = LocalPacer(PaceConfig(rate=500.0, cooldown=0.01))
    dispatcher = Dispatcher(Slots(pacer), max_in_flight, max_attempts=3, backoff=0.01, seed=1)
    return dispatcher.run(list(range(items)), lambda _: "api", attempt), pacer


def test_a_slow_answer_holds_no_slot_that_others_need():
    others_done = threading.Event()
    finished: set[int] = set()
    lock = threading.Lock()

    def attempt(i: int):
        if i < 3:  # three answers that hang until every other item has its answer
            assert others_done.wait(NO_HANG), "the slow answers held up the others"
            return Status.OK, i
        with lock:
            finished.add(i)
            if len(finished) == 17:
                others_done.set()
        return Status.OK, i

    done, _ = run_with_events(4, attempt)  # a fixed pool of 4 threads, 3 of them held
    assert [d.status for d in done] == [Status.OK] * 20 and others_done.is_set()


def test_a_backoff_waits_in_the_queue_not_in_a_thread():
    clock = Clock()  # the backoff (0.5-1.5 s) passes only on this clock: the others must go meanwhile
    order: list[tuple[int, int]] = []

    def attempt(i: int):
        order.append((i, sum(1 for k, _ in order if k == i) + 1))
        return (Status.TRANSIENT, None) if order[-1] == (0, 1) else (Status.OK, i)

    pacer = LocalPacer(PaceConfig(rate=10.0))  # the 19 others take 1.9 s: the retry comes due among them
    pacer.limiter.clock = clock
    dispatcher = Dispatcher(Slots(pacer, clock=clock, sleep=clock.sleep), 1, max_attempts=3, backoff=1.0, seed=1)
    done = dispatcher.run(list(range(20)), lambda _: "api", attempt)
    assert done[0].status == Status.OK and done[0].attempts == 2
    assert all(d.status == Status.OK and d.attempts == 1 for d in done[1:])
    retried = order.index((0, 2))
    assert 0 < retried < 20 and order[0] == (0, 1)  # the one thread served others while item 0 backed off
    assert order[retried - 1][0] != 0 and retried < 19  # ... and the retry went ahead of those still waiting


def test_a_block_pauses_the_budget_and_the_item_is_tried_again():
    blocked_once = []

    def attempt(i: int):
        if i == 5 and not blocked_once:
            blocked_once.append(i)
            return Status.BLOCKED, None
        return Status.OK, i

    done, pacer = run_with_events(4, attempt)
    assert pacer.stats()["api"]["blocks"] == 1
    assert done[5].status == Status.OK and done[5].attempts == 2


def test_an_attempt_that_raises_ends_its_item_failed_and_the_others_go_on():
    def attempt(i: int):
        if i == 7:
            raise KeyError("a bug")
        return Status.OK, i

    done, _ = run_with_events(4, attempt)
    assert done[7].status == Status.FAILED and isinstance(done[7].error, KeyError)
    assert [d.status for k, d in enumerate(done) if k != 7] == [Status.OK] * 19


def test_retryable_outcomes_end_after_max_attempts():
    done, _ = run_with_events(4, lambda i: (Status.TRANSIENT, i), items=3)
    assert [(d.status, d.attempts) for d in done] == [(Status.TRANSIENT, 3)] * 3


def test_in_flight_is_bounded_by_rate_times_timeout():
    assert in_flight_limit(80, 30) == 256 and in_flight_limit(2, 10) == 20 and in_flight_limit(0.01, 1) == 2


class _HangingApi(BaseHTTPRequestHandler):
    """Object 1 answers only after every other object was answered; the rest answer at once."""

    others_done = threading.Event()
    answered: ClassVar[set[int]] = set()
    lock = threading.Lock()

    def do_GET(self) -> None:
        object_id = int(self.path.rsplit("/", 1)[-1])
        if object_id == 1:
            self.others_done.wait(NO_HANG)
        else:
            with self.lock:
                self.answered.add(object_id)
                if len(self.answered) == 29:
                    self.others_done.set()
        body = f'{{"objectID": {object_id}, "title": "t"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_one_id_hanging_does_not_hold_the_lookups_of_the_others():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangingApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options = LookupOptions(api=f"http://127.0.0.1:{server.server_port}/v1", timeout=NO_HANG, max_in_flight=2)
        rows, figures = lookup_batch(list(range(1, 31)), options, LocalPacer(PaceConfig(rate=200)))
    finally:
        server.shutdown()
    assert [r["status"] for r in rows] == [Status.OK] * 30  # id 1 came back after the 29 others
    assert _HangingApi.others_done.is_set() and figures.requests == 30


def test_unlimited_lookups_against_the_emulator_are_bounded_by_in_flight_and_take_slots_in_batches(start_met):
    met = start_met(objects=300, seed=3)
    options = LookupOptions(api=met.url, timeout=5.0)
    pacer = LocalPacer(PaceConfig(rate=0))
    ids = [int(i) for i in met.catalog.ids[:200]]
    rows, figures = lookup_batch(ids, options, pacer)
    assert [r["objectID"] for r in rows] == ids and {r["status"] for r in rows} == {Status.OK}
    assert figures.requests == 200 and figures.peak_in_flight <= UNLIMITED_IN_FLIGHT
    assert figures.grants <= 200 / 8  # slots come many per round trip to the pacer, not one per request
    assert pacer.stats()[urlsplit(met.url).netloc]["rate"] is None  # no limit, no block


def test_a_block_with_no_limit_still_pauses_the_host_then_paces_it():
    sent: dict[int, list[float]] = {}
    reported: list[float] = []

    class Pacer(LocalPacer):
        def blocked(self, host: str) -> None:
            reported.append(time.monotonic())
            super().blocked(host)

    def attempt(i: int):
        sent.setdefault(i, []).append(time.monotonic())
        if i == 3 and len(sent[i]) == 1:
            return Status.BLOCKED, None
        return Status.OK, i

    pacer = Pacer(PaceConfig(rate=0, cooldown=0.3))
    dispatcher = Dispatcher(Slots(pacer), 4, max_attempts=3, backoff=0.01, seed=1)
    done = dispatcher.run(list(range(40)), lambda _: "mirror", attempt)
    assert [d.status for d in done] == [Status.OK] * 40 and done[3].attempts == 2
    assert len(reported) == 1 and sent[3][1] >= reported[0] + 0.3  # the retry waited out the cool-down
    assert pacer.stats()["mirror"]["blocks"] == 1 and pacer.stats()["mirror"]["rate"] is not None  # finite now


def test_a_task_hands_on_its_tail_instead_of_waiting_for_a_hanging_answer_or_a_long_backoff():
    release = threading.Event()
    calls: dict[int, int] = {}
    finished: list[int] = []

    def attempt(i: int):
        calls[i] = calls.get(i, 0) + 1
        if i == 0:
            release.wait(NO_HANG)  # hangs until the test lets it go: the run must not wait for it
            return Status.OK, i
        if i == 1:
            return Status.TRANSIENT, None  # its backoff (10 s at least) is far longer than late_after
        return Status.OK, i

    pacer = LocalPacer(PaceConfig(rate=0))
    dispatcher = Dispatcher(Slots(pacer), 4, max_attempts=3, backoff=20.0, seed=1, late_after=0.2)
    done = dispatcher.run(
        list(range(10)), lambda _: "api", attempt, tries=[0, 1, 0, 0, 0, 0, 0, 0, 0, 0], finished=finished.append
    )
    handed_on = not release.is_set()
    release.set()
    assert handed_on and done[0].late and done[0].status == Status.TRANSIENT and done[0].attempts == 1
    assert done[1].late and done[1].attempts == 2 and 10 <= done[1].due <= 60  # tries carried over
    assert [d.status for d in done[2:]] == [Status.OK] * 8 and not any(d.late for d in done[2:])
    assert sorted(finished) == list(range(2, 10))  # the late ones are not finished


def test_an_items_last_attempt_is_waited_for_not_handed_on():
    def attempt(i: int):
        if i == 0:
            time.sleep(0.6)  # longer than late_after, but it is this item's last attempt
        return Status.OK, i

    dispatcher = Dispatcher(Slots(LocalPacer(PaceConfig(rate=0))), 4, max_attempts=2, backoff=0.01, late_after=0.1)
    done = dispatcher.run([0, 1, 2], lambda _: "api", attempt, tries=[1, 0, 0])
    assert [(d.status, d.late, d.attempts) for d in done] == [
        (Status.OK, False, 2),
        (Status.OK, False, 1),
        (Status.OK, False, 1),
    ]


@pytest.mark.parametrize("hand_on_hanging", [True, False])
def test_hanging_answers_do_not_eat_the_in_flight_bound_when_handed_on_mid_run(hand_on_hanging):
    release = threading.Event()
    finished: list[int] = []

    def attempt(i: int):
        if i < 2:  # the first two hang until the test lets them go, holding the whole bound of 2
            release.wait(NO_HANG if hand_on_hanging else 1.5)
        return Status.OK, i

    dispatcher = Dispatcher(
        Slots(LocalPacer(PaceConfig(rate=0))), 2, 3, 0.01, late_after=1.0, hand_on_hanging=hand_on_hanging
    )
    done = dispatcher.run(list(range(12)), lambda _: "api", attempt, finished=finished.append)
    still_hanging = not release.is_set()
    release.set()
    assert [d.status for d in done[2:]] == [Status.OK] * 10 and sorted(finished)[-10:] == list(range(2, 12))
    if hand_on_hanging:  # the other ten went while the two still hung; those two are handed on
        assert still_hanging and all(d.late and d.attempts == 1 and d.status == Status.TRANSIENT for d in done[:2])
        assert sorted(finished) == list(range(2, 12))
    else:  # without it, the ten waited for the two (a bound of 2, both held): a hanging one ended first
        assert finished[0] in (0, 1) and not any(d.late for d in done)
