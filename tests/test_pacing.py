"""The rate limiter's algorithm, on a fake clock (pure: no sleeping, no cluster)."""

from __future__ import annotations

import pytest

from metdata.net.pacing import MET_CEILING, PaceConfig, RateLimiter, RateRefused, check_rate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def next_slot(limiter: RateLimiter, host: str) -> float:
    """The wait for ``host``'s next request slot (one slot granted, however far ahead)."""
    return limiter.grant(host, 1, horizon=float("inf"))[0][0]


def test_slots_are_spaced_by_the_rate_per_host():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=4.0), clock=clock)
    assert [next_slot(limiter, "api") for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert next_slot(limiter, "images") == 0.0  # a separate budget
    clock.now += 10  # idle time is not banked as a burst
    assert [next_slot(limiter, "api") for _ in range(2)] == [0.0, 0.25]


def test_a_block_pauses_everyone_and_halves_the_rate_once_per_incident():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=4.0, cooldown=30, min_rate=1.5), clock=clock)
    next_slot(limiter, "api")
    assert limiter.blocked("api") is True
    assert limiter.blocked("api") is False  # the other in-flight requests of the same incident
    assert next_slot(limiter, "api") == 30.0
    assert limiter.stats()["api"]["rate"] == 2.0 and limiter.stats()["api"]["blocks"] == 1
    clock.now += 30 + 100  # long after the pause: a new, unrelated incident
    limiter.blocked("api")
    assert limiter.stats()["api"]["rate"] == 1.5  # never below min_rate
    assert next_slot(limiter, "api") == 30.0  # the cool-down did not grow


def test_a_block_right_after_a_pause_doubles_the_next_pause():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=1.0, cooldown=60), clock=clock)
    pauses = []
    for _ in range(8):
        limiter.blocked("api")
        pauses.append(next_slot(limiter, "api"))
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
        next_slot(limiter, "api")
        rates.append(limiter.stats()["api"]["rate"])
    # the quiet time counts from the end of the pause
    assert rates[:2] == [4.0, 5.0] and rates == sorted(rates) and rates[-1] == 8.0


def test_not_adaptive_keeps_the_lowered_rate():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=8.0, cooldown=10, probe_every=60), clock=clock)
    limiter.blocked("api")
    clock.now += 1000
    next_slot(limiter, "api")
    assert limiter.stats()["api"]["rate"] == 4.0


def test_unlimited_grants_what_is_asked_until_a_block_then_pauses_and_falls_back_to_half_the_rate_sent():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=0, cooldown=30), clock=clock)
    for _ in range(10):  # 10 x 300 slots over 2.5 s: 1,200/s granted, none of them waiting
        waits, again = limiter.grant("mirror:8080", 300)
        assert waits == [0.0] * 300 and again == 0.0
        clock.now += 0.25
    assert limiter.stats()["mirror:8080"]["rate"] is None  # no limit
    assert limiter.blocked("mirror:8080") is True
    waits, again = limiter.grant("mirror:8080", 5)
    assert waits == [] and again > 28  # the whole host pauses for the cool-down, unlimited or not
    rate = limiter.stats()["mirror:8080"]["rate"]
    assert 500 <= rate <= 700  # then a finite rate: half of the ~1,200/s it was sending
    clock.now += 30
    waits, _ = limiter.grant("mirror:8080", 1000)
    assert len(waits) < 1000 and waits[1] - waits[0] == pytest.approx(1 / rate)  # paced from now on


def test_a_429_slows_an_unlimited_host_without_a_pause_and_leaves_a_finite_one_alone():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=0), clock=clock)
    limiter.grant("mirror", 400)
    clock.now += 1
    assert limiter.throttled("mirror") is True and limiter.stats()["mirror"]["rate"] == 200
    assert limiter.grant("mirror", 1) == ([0.0], 0.0)  # no pause
    finite = RateLimiter(PaceConfig(rate=5), clock=clock)
    assert finite.throttled("api") is False and finite.stats()["api"]["rate"] == 5


def test_the_mets_hosts_never_go_past_their_ceiling_even_for_library_callers():
    clock = Clock()
    limiter = RateLimiter(PaceConfig(rate=0), clock=clock)
    waits, _ = limiter.grant("images@images.metmuseum.org", 100)
    assert waits[1] - waits[0] == pytest.approx(1 / MET_CEILING)
    assert limiter.stats()["images@images.metmuseum.org"]["rate"] == MET_CEILING
    assert len(limiter.grant("images@127.0.0.1:8080", 100)[0]) == 100  # the emulator: no limit


@pytest.mark.parametrize("rate", [0, 80.5, 500])
def test_check_rate_refuses_no_limit_or_more_than_80_for_the_met_and_says_why(rate):
    for hosts in (["collectionapi.metmuseum.org"], ["127.0.0.1:8080", "images@images.metmuseum.org"]):
        with pytest.raises(RateRefused, match=r"metmuseum\.org: the Met documents a ceiling of 80"):
            check_rate(rate, hosts)
    check_rate(rate, ["127.0.0.1:8080", "mirror.example.org"])  # anyone else: any rate
    check_rate(80, ["collectionapi.metmuseum.org"])


@pytest.mark.parametrize("command", ["ids", "ingest"])
@pytest.mark.parametrize("rate", ["0", "500"])
def test_the_cli_refuses_no_limit_or_more_than_80_against_the_met_before_any_request(command, rate, tmp_path):
    from click.testing import CliRunner

    from metdata.cli import main

    result = CliRunner().invoke(main, [command, "--data", str(tmp_path), "--rate", rate])  # --api: the Met's
    assert result.exit_code == 1, result.output
    assert "is refused for collectionapi.metmuseum.org: the Met documents a ceiling of 80" in result.output
    assert not any(tmp_path.iterdir())  # nothing written
    below = CliRunner().invoke(main, [command, "--data", str(tmp_path), "--rate", "0.001"])
    assert below.exit_code == 2 and "give 0 for no limit" in below.output
