"""The rate limiter's algorithm, on a fake clock (pure: no sleeping, no cluster)."""

from __future__ import annotations

from metdata.pacing import PaceConfig, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_by_the_rate_per_host():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=4.0), clock=clock)
    assert [limiter.reserve("api") for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert limiter.reserve("images") == 0.0  # a separate budget
    clock.now += 10  # idle time is not banked as a burst
    assert [limiter.reserve("api") for _ in range(2)] == [0.0, 0.25]


def test_a_block_pauses_everyone_and_halves_the_rate_once_per_incident():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=4.0, cooldown=30, min_rate=1.5), clock=clock)
    limiter.reserve("api")
    assert limiter.blocked("api") is True
    assert limiter.blocked("api") is False  # the other in-flight requests of the same incident
    assert limiter.reserve("api") == 30.0
    assert limiter.stats()["api"]["rate"] == 2.0 and limiter.stats()["api"]["blocks"] == 1
    clock.now += 30 + 100  # long after the pause: a new, unrelated incident
    limiter.blocked("api")
    assert limiter.stats()["api"]["rate"] == 1.5  # never below min_rate
    assert limiter.reserve("api") == 30.0  # the cool-down did not grow


def test_a_block_right_after_a_pause_doubles_the_next_pause():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=1.0, cooldown=60), clock=clock)
    pauses = []
    for _ in range(8):
        limiter.blocked("api")
        pauses.append(limiter.reserve("api"))
        clock.now += pauses[-1] + 1
    assert pauses[:4] == [60.0, 120.0, 240.0, 480.0] and pauses[-1] == 3600.0


def test_adaptive_probes_back_up_while_no_block_comes():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=8.0, adaptive=True, cooldown=10, probe_every=60), clock=clock)
    limiter.blocked("api")
    assert limiter.stats()["api"]["rate"] == 4.0
    rates = []
    for _ in range(6):
        clock.now += 61
        limiter.reserve("api")
        rates.append(limiter.stats()["api"]["rate"])
    # the quiet time counts from the end of the pause
    assert rates[:2] == [4.0, 5.0] and rates == sorted(rates) and rates[-1] == 8.0


def test_not_adaptive_keeps_the_lowered_rate():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=8.0, cooldown=10, probe_every=60), clock=clock)
    limiter.blocked("api")
    clock.now += 1000
    limiter.reserve("api")
    assert limiter.stats()["api"]["rate"] == 4.0
