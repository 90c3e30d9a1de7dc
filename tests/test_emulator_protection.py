"""The bot protection: a sliding-window budget per client and host, the block and its penalty."""

from __future__ import annotations

from conftest import stats

from metdata.emulator.protection import Throttle, ThrottleConfig


def test_burst_over_budget_is_blocked_with_the_incapsula_page(start_met, http):
    met = start_met(
        throttle=True,
        throttle_window=10,
        throttle_burst=5,
        throttle_penalty=60,
        block_200_share=0.0,
    )
    answers = [http.get(f"{met.url}/departments") for _ in range(8)]
    assert [a.status_code for a in answers] == [200] * 5 + [403] * 3
    block = answers[5]
    assert block.headers["Content-Type"].startswith("text/html")
    assert "Retry-After" not in block.headers
    assert "Request unsuccessful. Incapsula incident ID:" in block.text
    assert 600 < len(block.content) < 900
    assert stats(met)["api"]["blocked"] == 3


def test_some_blocks_come_with_status_200(start_met, http):
    met = start_met(
        throttle=True,
        throttle_window=10,
        throttle_burst=1,
        throttle_penalty=60,
        block_200_share=0.5,
    )
    answers = [http.get(f"{met.url}/departments") for _ in range(40)][1:]
    ok_blocks = [a for a in answers if a.status_code == 200]
    assert ok_blocks and len(ok_blocks) < len(answers)
    assert all("Incapsula" in a.text and a.headers["Content-Type"].startswith("text/html") for a in ok_blocks)


def test_block_lasts_the_penalty_then_lifts():
    clock = [0.0]
    throttle = Throttle(ThrottleConfig(window=0.5, burst=3, penalty=1.0), clock=lambda: clock[0])
    assert [throttle.admit("a", "api") for _ in range(4)] == [True, True, True, False]
    clock[0] = 0.5
    assert not throttle.admit("a", "api")  # still inside the penalty
    clock[0] = 1.2
    assert throttle.admit("a", "api")


def test_safe_pace_is_never_blocked():
    clock = [0.0]
    throttle = Throttle(ThrottleConfig(window=0.5, burst=3, penalty=5), clock=lambda: clock[0])
    for step in range(60):  # 5 requests/s against a budget of 6/s
        clock[0] = step * 0.2
        assert throttle.admit("a", "api")


def test_api_and_image_hosts_have_separate_budgets(start_met, http):
    met = start_met(throttle=True, throttle_window=10, throttle_burst=2, throttle_penalty=60)
    http.get(f"{met.url}/departments")
    assert http.get(f"{met.url}/departments").status_code == 200
    assert http.get(f"{met.url}/departments").status_code == 403  # API budget spent
    image_path = "/CRDImages/xx/web-large/none.jpg"
    assert http.get(f"{met.base}{image_path}").status_code == 404  # image host still answers
    counters = stats(met)
    assert counters["api"]["blocked"] == 1 and "blocked" not in counters.get("images", {})


def test_throttle_counts_per_client():
    clock = [0.0]
    throttle = Throttle(ThrottleConfig(window=10, burst=2, penalty=5), clock=lambda: clock[0])
    assert [throttle.admit("a", "api") for _ in range(3)] == [True, True, False]
    assert throttle.admit("b", "api") and throttle.admit("a", "images")
    clock[0] = 4.9
    assert not throttle.admit("a", "api")
    clock[0] = 5.1
    assert throttle.admit("a", "api")
