"""``metdata plan`` with no rate limit or a rate above the Met's ceiling (issue 24): pure pricing, and the CLI
against the emulator (allowed) and the Met's own hosts (refused before any request)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from metdata.acquire.plan import Facts, price, recommend, render
from metdata.cli import main

FACTS = Facts("t", 500_000, (("medium=Paintings", 10_000),))


def test_no_limit_prices_no_hours_for_that_host_and_ranks_by_what_is_left():
    both = {c.path: c for c in price(FACTS, rate=0, image_rate=0)}
    assert all(c.host_bound and c.hours == 0 for c in both.values())  # nothing priced: the hosts bound it
    assert recommend(list(both.values())).path == "csv+search"  # the fewest requests of the complete paths
    assert both["csv+search"].requests < both["search"].requests < both["full"].requests

    api_free = {c.path: c for c in price(FACTS, rate=0, image_rate=1)}
    limited = {c.path: c for c in price(FACTS, rate=1, image_rate=1)}
    for path, cost in api_free.items():  # only the image host's hours are left: a lower bound
        assert cost.host_bound and 0 < cost.hours <= limited[path].hours
    assert api_free["full"].hours == limited["full"].image_requests / 3600

    fast = {c.path: c for c in price(FACTS, rate=500, image_rate=500)}  # above the Met's ceiling: priced as any
    assert not any(c.host_bound for c in fast.values())
    assert fast["full"].hours == pytest.approx(
        (limited["full"].api_requests + limited["full"].image_requests) / 500 / 3600
    )


def test_the_table_says_what_bounds_the_hours():
    costs = price(FACTS, rate=0, image_rate=0)
    text = render(FACTS, costs, 0, 0)
    table = text.split("\n\n")[1].splitlines()
    assert "hours at no limit and no limit" in table[0]
    assert all(row.split()[3] == "host-bound" for row in table[1:])  # no hours where nothing is priced
    assert "no limit for the API host and the image host (--rate 0)" in text
    best = next(c for c in costs if c.path == "csv+search")
    assert f"recommended: csv+search, {best.requests:,} requests, bounded by the host. Run:" in text
    half = render(FACTS, price(FACTS, rate=0, image_rate=2), 0, 2)
    rows = half.split("\n\n")[1].splitlines()
    assert "hours at no limit and 2/s" in rows[0] and all(row.split()[3] == "≥" for row in rows[1:])
    assert "no limit for the API host (--rate 0)" in half
    assert "recommended: csv+search, at least " in half
    costs = {c.path: c for c in price(FACTS, rate=0, image_rate=2, data="D")}
    assert costs["csv+search"].commands[1].endswith("--rate 0")  # ids and ingest at no limit
    assert costs["csv+search"].commands[3].endswith("--rate 2")  # images: one --rate per host, the slower one
    priced = render(FACTS, price(FACTS, rate=40, image_rate=4), 40, 4)
    assert "no limit" not in priced and "host-bound" not in priced and "about " in priced


def test_cli_takes_no_limit_and_fast_rates_for_other_hosts(start_met):
    met = start_met(objects=300, seed=12)
    base = ["plan", "--target", "painting-culture", "--api", met.url, "--data", "D"]
    unlimited = CliRunner().invoke(main, [*base, "--rate", "0", "--image-rate", "0"])
    assert unlimited.exit_code == 0, unlimited.output
    assert "bounded by the host" in unlimited.output and "metdata ingest --api" in unlimited.output
    fast = CliRunner().invoke(main, [*base, "--rate", "500", "--image-rate", "200", "--json"])
    assert fast.exit_code == 0, fast.output
    plan = json.loads(fast.output)
    assert plan["rate"] == 500 and plan["image_rate"] == 200 and plan["unlimited"] is None
    assert not any(p["host_bound"] for p in plan["paths"])
    as_json = json.loads(CliRunner().invoke(main, [*base, "--rate", "0", "--json"]).output)
    assert as_json["unlimited"].startswith("no limit for the API host") and all(
        p["host_bound"] for p in as_json["paths"] if p["api_requests"]
    )


def test_cli_refuses_no_limit_and_fast_rates_for_the_met_before_any_request():
    met = ["plan", "--target", "painting-culture", "--api", "https://collectionapi.metmuseum.org/public/collection/v1"]
    for flags, message in (
        (["--rate", "0"], "--rate 0 (no limit) is refused for collectionapi.metmuseum.org"),
        (["--rate", "500"], "--rate 500 is refused for collectionapi.metmuseum.org"),
        (["--image-rate", "0"], "--image-rate 0 (no limit) is refused for"),
        (["--image-rate", "81"], "--image-rate 81 is refused for"),
    ):
        result = CliRunner().invoke(main, [*met, *flags])  # no network here: a request would fail otherwise
        assert result.exit_code == 1 and message in result.output, result.output
        assert "ceiling of 80 requests/s" in result.output
    image = CliRunner().invoke(main, [*met, "--image-rate", "0"])
    assert "images.metmuseum.org" in image.output
    tiny = CliRunner().invoke(main, [*met, "--rate", "0.001"])
    assert tiny.exit_code == 2 and "give 0 for no limit" in tiny.output
