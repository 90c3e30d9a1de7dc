"""The search client against the emulator, and against a small server that misbehaves on purpose.

Every trap of the facts file ("Search (v1.1)") has a test here that a naive client would fail:
a filter the service would drop silently is refused before any request, a query over the
10,000-result window is split and read completely, a split or a page that does not add up is an
error naming the query, nothing written.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner
from conftest import SAMPLES, stats

from metdata.acquire.listing import read_listing, read_listing_meta
from metdata.acquire.lookup import LookupOptions
from metdata.acquire.search import SearchError, search_all
from metdata.cli import main
from metdata.core.schema import DEPARTMENTS
from metdata.core.searchquery import Query, SearchQueryError
from metdata.net.pacing import LocalPacer, PaceConfig
from metdata.storage.dataset import Dataset

FAST = ["--rate", "80", "--cooldown", "0.2", "--timeout", "3", "--max-attempts", "6"]


def ids_cli(met_url: str, root, *args: str):
    return CliRunner().invoke(main, ["ids", "--api", met_url, "--data", str(root), *FAST, *args])


def written(root) -> list:
    """The files under a root (the lease may leave the empty folder behind, no file)."""
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def api_requests(met) -> int:
    return stats(met).get("api", {}).get("requests", 0)


def search_hits(met, query: str) -> tuple[int, set[int]]:
    """A query's total and ids read directly (queries under the window only)."""
    import requests

    url = met.url + ".1/search"
    total = requests.get(url, params=[*parse_qsl(query), ("limit", "1")], timeout=10).json()["total"]
    found: set[int] = set()
    for offset in range(0, total, 500):
        page = requests.get(url, params=[*parse_qsl(query), ("offset", offset), ("limit", 500)], timeout=10).json()
        found.update(page["objectIDs"] or [])
    return total, found


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("departmentId=999&medium=Paintings", "departmentId='999' is no department"),
        ("departmentId=abc", "departmentId='abc' is no department"),
        ("hasImages=True", "write hasImages=true"),
        ("hasimages=true", "write 'hasImages'"),
        ("isPublicDomain=true", "'isPublicDomain' is not a search filter"),
        ("dateBegin=1600", "dateBegin without dateEnd"),
        ("dateBegin=16th&dateEnd=1700", "dateBegin='16th' is not a year"),
        ("medium=Paintings&limit=20", "limit is set by metdata"),
        ("medium=Paintings&medium=Prints", "medium is given twice"),
        ("departmentId=\u00b2", "is no department"),
        ("departmentId=\u0663", "is no department"),
        ("dateBegin=--5&dateEnd=10", "is not a year"),
        ("medium=|", "names nothing"),
        ("q=*", "would answer the whole index"),
        ("title=true", "would answer the whole index"),
        ("q=" + "a" * 70_000, "longer than 2000 characters"),
    ],
)
def test_a_filter_the_service_would_drop_is_refused_before_any_request(met, tmp_path, query, message):
    result = ids_cli(met.url, tmp_path / "data", "--search", "medium=Paintings", "--search", query)
    assert result.exit_code == 1 and message in result.output, result.output
    assert api_requests(met) == 0
    assert not written(tmp_path / "data")


def test_bad_input_exits_non_zero_with_nothing_written(met, tmp_path):
    root = tmp_path / "data"
    unknown = ids_cli(met.url, root, "--target", "paintings")
    assert unknown.exit_code == 1 and "unknown target 'paintings'" in unknown.output
    no_v1 = ids_cli(met.url.removesuffix("/v1"), root, "--target", "painting-culture")
    assert no_v1.exit_code == 1 and "does not end in /v1" in no_v1.output
    honest = ids_cli(met.url, root, "--target", "object-type")
    assert honest.exit_code == 1 and "search saves" in honest.output and "--from-csv" in honest.output
    mixed = ids_cli(met.url, root, "--target", "painting-culture", "--metadata-date", "2024-01-01")
    assert mixed.exit_code == 2 and "not with --target" in mixed.output
    empty = ids_cli(met.url, root, "--search", "")
    assert empty.exit_code == 2 and "'' is empty: give a query" in empty.output
    nowhere = CliRunner().invoke(main, ["ids", "--api", met.url, "--data", "", "--search", "q=x"])
    assert nowhere.exit_code == 2 and "'' is empty: give a local folder" in nowhere.output  # not the current folder
    assert "leave the option out" not in nowhere.output
    lone_add = ids_cli(met.url, root, "--add")
    assert lone_add.exit_code == 2 and "give --target or --search" in lone_add.output
    bad_file = tmp_path / "t.toml"
    bad_file.write_text(
        'name = "t"\nfields = ["culture"]\n[[rules]]\nclass = "A"\nexact = "a"\n[search]\nqueries = ["hasImages=1"]'
    )
    in_file = ids_cli(met.url, root, "--target", str(bad_file))
    assert in_file.exit_code == 1 and "queries[0]" in in_file.output and "hasImages" in in_file.output
    assert api_requests(met) == 0 and not written(root)


def test_ids_target_snapshots_the_union_and_records_each_query(start_met, tmp_path):
    met = start_met(objects=1500, seed=4)
    root = tmp_path / "data"
    result = ids_cli(met.url, root, "--target", "painting-culture", "--search", "departmentId=11")
    assert result.exit_code == 0, result.output
    spent = api_requests(met)
    dataset = Dataset(str(root))
    meta = read_listing_meta(dataset)
    search = meta["search"]
    from metdata.core.targets import builtin

    queries = [q.text for q in builtin("painting-culture").search.queries] + ["departmentId=11"]
    assert [q["query"] for q in search["queries"]] == queries
    union: set[int] = set()
    for recorded in search["queries"]:
        total, found = search_hits(met, recorded["query"])
        assert recorded["total"] == total == len(found) and "split" not in recorded
        union |= found
    assert read_listing(dataset) == sorted(union) and meta["total"] == search["distinct_ids"] == len(union)
    assert search["target"] == "painting-culture" and search["api"] == met.url and search["taken_at"]
    assert search["requests"] == spent and search["added_to_listing_of"] is None
    assert f"{len(union)} candidate ids" in result.output

    # without --add a new search replaces the listing, as 'metdata ids' does
    again = ids_cli(met.url, root, "--search", "departmentId=14&geoLocation=India")
    assert again.exit_code == 0, again.output
    india = search_hits(met, "departmentId=14&geoLocation=India")[1]
    assert read_listing(dataset) == sorted(india)
    # --add merges into it, and records what it merged into
    added = ids_cli(met.url, root, "--search", "departmentId=11", "--add")
    assert added.exit_code == 0, added.output
    assert read_listing(dataset) == sorted(india | search_hits(met, "departmentId=11")[1])
    meta = read_listing_meta(dataset)
    assert meta["search"]["added_to_listing_of"] == len(india)
    assert meta["search"]["previous"]["search"]["queries"][0]["query"] == "departmentId=14&geoLocation=India"


def test_add_after_the_csv_lists_only_the_ids_it_lacks_for_ingest(start_met, tmp_path):
    from metdata.jobs.ingest import IngestOptions, load_csv, plan

    met = start_met(catalog=SAMPLES)
    lines = (SAMPLES.parent / "MetObjects-sample.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    csv = tmp_path / "part.csv"
    csv.write_text("".join(lines[:1] + lines[4:]), encoding="utf-8")  # the header and 7 of the 10 rows
    dataset = Dataset(str(tmp_path / "data"))
    load_csv(dataset, IngestOptions(from_csv=str(csv)))
    in_csv = set(read_listing(dataset))
    assert len(in_csv) == 7
    result = ids_cli(
        met.url, tmp_path / "data", "--search", "isHighlight=false", "--search", "isHighlight=true", "--add"
    )
    assert result.exit_code == 0, result.output
    hits = search_hits(met, "isHighlight=false")[1] | search_hits(met, "isHighlight=true")[1]
    samples = {int(p.stem) for p in SAMPLES.glob("*.json")}
    assert in_csv < samples <= hits and read_listing(dataset) == sorted(in_csv | hits)
    lookup = LookupOptions(api=met.url, timeout=3)
    planned = plan(dataset, IngestOptions(lookup=lookup, pace=PaceConfig(rate=80)))
    looked_up = {i for task in planned.tasks for i in task.ids}
    assert looked_up == hits - in_csv and samples - in_csv <= looked_up  # the csv rows are not looked up again
    assert len(samples - in_csv) == 3


class Misbehaving:
    """A real HTTP server on 127.0.0.1 whose search answers come from ``answer(params)``."""

    def __init__(self, answer: Callable[[dict], dict]) -> None:
        self.answer, self.seen = answer, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                owner.seen.append(params)
                body = json.dumps(owner.answer(params)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/public/collection/v1"


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Callable[[dict], dict]], Misbehaving]]:
    started: list[Misbehaving] = []

    def start(answer):
        server = Misbehaving(answer)
        server.thread.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.server.shutdown()
        server.server.server_close()


def paged(total: int, params: dict, cut_at: int | None = None, short: int = 0) -> dict:
    """The page a faithful service answers for ``total`` results numbered 1..total; ``cut_at``: the
    window ends there (null pages after it), ``short``: pages from that offset on lack one id."""
    offset, limit = int(params.get("offset", 0)), min(int(params.get("limit", 100)), 500)
    end = min(offset + limit, total, 10_000, cut_at if cut_at is not None else total)
    ids = list(range(offset + 1, end + 1))
    if short and offset >= short and ids:
        ids = ids[:-1]
    return {"total": total, "objectIDs": ids or None}


def read(url: str, *queries: str):
    return search_all([Query.parse(q) for q in queries], LookupOptions(api=url, timeout=3), LocalPacer(PaceConfig(80)))


def test_a_window_cut_short_is_an_error_naming_the_query(misbehaving, tmp_path):
    cut = misbehaving(lambda p: paged(1200, p, cut_at=500))
    with pytest.raises(
        SearchQueryError, match=r"'q=cut'.*offset 500 holds 0 ids.*cut short, 700 results would be lost"
    ):
        read(cut.url, "q=cut")
    short = misbehaving(lambda p: paged(1200, p, short=500))
    with pytest.raises(SearchQueryError, match="offset 500 holds 499 ids where its total"):
        read(short.url, "q=short")
    result = ids_cli(cut.url, tmp_path / "data", "--search", "q=cut")
    assert result.exit_code == 1 and "cut short" in result.output and not written(tmp_path / "data")


def test_a_total_that_changes_between_pages_is_an_error(misbehaving):
    calls = iter(range(10_000))
    moving = misbehaving(lambda p: paged(1200 + (next(calls) > 1), p))
    with pytest.raises(SearchQueryError, match="total changed from 1200 to 1201 between pages"):
        read(moving.url, "q=moving")


def test_the_last_short_page_and_an_empty_query_are_fine(misbehaving):
    exact = misbehaving(lambda p: paged(1201 if p.get("q") == "some" else 0, p))
    (some, none), requests = read(exact.url, "q=some", "q=none", "q=some")
    assert some.ids == set(range(1, 1202)) and none.ids == set() and none.total == 0
    # three pages (the first gives the total); one page of nothing; the repeated query is not read again
    assert requests == len(exact.seen) == 3 + 1
    assert {p["limit"] for p in exact.seen} == {"500"}


def test_ids_over_the_largest_id_are_an_error_nothing_written(misbehaving, tmp_path):
    for huge in (10**20, 2**63 - 1):
        server = misbehaving(lambda p, huge=huge: {"total": 2, "objectIDs": [5, huge]})
        with pytest.raises(SearchQueryError, match="not integers from 1 to 9007199254740992"):
            read(server.url, "q=huge")
        result = ids_cli(server.url, tmp_path / "data", "--search", "q=huge")
        assert result.exit_code == 1 and "not integers from 1 to" in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert not written(tmp_path / "data")


def test_a_split_that_does_not_add_up_names_the_query_and_the_shortfall(misbehaving, tmp_path):
    def answer(params: dict) -> dict:
        if "departmentId" in params:
            return paged(500, params)  # 19 x 500 = 9,500: 500 short of the parent
        if "hasImages" in params or "isOnView" in params or "isHighlight" in params:
            return paged(4_000, params)  # 8,000: 2,000 short
        if "dateBegin" in params:
            return paged(1_000, params)  # 6 windows: 6,000
        return paged(10_000 + 1, params) if params.get("q") == "big" else paged(10, params)

    server = misbehaving(answer)
    with pytest.raises(SearchQueryError) as raised:
        read(server.url, "q=big")
    message = str(raised.value)
    assert "'q=big' has 10001 results" in message and "no split adds up" in message
    assert "departmentId: +501" in message and "hasImages: +2001" in message and "date: +4001" in message
    result = ids_cli(server.url, tmp_path / "data", "--search", "q=small", "--search", "q=big")
    assert result.exit_code == 1 and "no split adds up" in result.output and not written(tmp_path / "data")


def test_a_split_that_adds_up_is_read_completely_and_recursively(misbehaving):
    # 25,000 results: departments 6 and 9 hold 12,000 each (over the window: split again, by hasImages), 1 the rest
    sizes = {"6": 12_000, "9": 12_000, "1": 1_000}
    base = {"6": 0, "9": 12_000, "1": 24_000}

    def answer(params: dict) -> dict:
        dept = params.get("departmentId")
        if dept is None:
            return paged(25_000, params)
        size = sizes.get(dept, 0)
        offset = base.get(dept, 0)
        if "hasImages" in params:
            size, offset = 6_000, offset + (0 if params["hasImages"] == "true" else 6_000)
        page = paged(size, params)
        return {
            "total": page["total"],
            "objectIDs": [offset + i for i in page["objectIDs"]] if page["objectIDs"] else None,
        }

    server = misbehaving(answer)
    (done,), _ = read(server.url, "q=all")
    assert done.ids == set(range(1, 25_001)) and done.by == "departmentId"
    record = done.record()
    assert sum(s["total"] for s in record["split"]) == 25_000
    six = next(s for s in record["split"] if s["query"] == "q=all&departmentId=6")
    assert six["split_by"] == "hasImages" and [s["total"] for s in six["split"]] == [6_000, 6_000]


def test_the_search_goes_through_the_paced_path_blocks_and_faults_included(start_met, tmp_path):
    met = start_met(
        objects=1500,
        seed=5,
        throttle=True,
        throttle_window=1.0,
        throttle_burst=6,
        throttle_penalty=0.3,
        fault_rate=0.2,
        faults=frozenset({"503"}),
    )
    clean = start_met(objects=1500, seed=5)
    queries = [f"departmentId={d}" for d, _ in DEPARTMENTS] + ["isHighlight=false", "hasImages=true"]
    done, requests = search_all(
        [Query.parse(q) for q in queries],
        LookupOptions(api=met.url, timeout=3, max_attempts=20, backoff=0.02),
        LocalPacer(PaceConfig(rate=40, cooldown=0.4)),
    )
    counters = stats(met)["api"]
    assert counters.get("blocked", 0) > 0 and counters.get("fault_503", 0) > 0
    assert [d.ids for d in done] == [search_hits(clean, q)[1] for q in queries]
    assert requests == counters["requests"]


def test_search_url_needs_an_api_ending_in_v1():
    from metdata.acquire.search import search_url

    assert search_url("http://h/public/collection/v1") == "http://h/public/collection/v1.1/search"
    for bad in ("http://h/public/collection", "http://h/public/collection/v1.1", "http://h/v1?x=1"):
        with pytest.raises(SearchError, match="does not end in /v1"):
            search_url(bad)


@pytest.mark.slow
def test_a_query_over_the_window_is_split_and_read_completely(start_met, tmp_path):
    # The emulator's index holds a few withdrawn records of no current department (as the real one
    # may): the department split falls short of the total, so the client must take another split.
    met = start_met(objects=12_000, seed=6)
    result = ids_cli(met.url, tmp_path / "data", "--search", "isHighlight=false")
    assert result.exit_code == 0, result.output
    dataset = Dataset(str(tmp_path / "data"))
    (record,) = read_listing_meta(dataset)["search"]["queries"]
    assert record["total"] > 10_000 and record["split_by"] in ("hasImages", "isOnView", "isHighlight")
    assert sum(s["total"] for s in record["split"]) == record["total"]
    assert len(read_listing(dataset)) == record["total"]


def test_plan_prices_every_path_and_names_the_fastest_with_its_commands(start_met, tmp_path):
    met = start_met(objects=1500, seed=12)
    csv = tmp_path / "MetObjects.csv"
    from metdata.acquire.plan import BYTES_PER_CSV_ROW

    csv.write_bytes(b"x" * round(1400 * BYTES_PER_CSV_ROW))  # its size says 1,400 rows: 100 objects newer than it
    args = ["plan", "--target", "painting-culture", "--api", met.url, "--from-csv", str(csv), "--data", "/tmp/my root"]
    result = CliRunner().invoke(main, [*args, "--rate", "40"])
    assert result.exit_code == 0, result.output
    from metdata.core.targets import builtin

    queries = builtin("painting-culture").search.queries
    totals = [search_hits(met, q.text)[0] for q in queries]
    assert api_requests(met) == 1 + len(queries) + sum(1 + max(1, -(-t // 500)) for t in totals)  # plan + checks
    lines = result.output.splitlines()
    assert lines[0] == f"target painting-culture: 1,500 objects listed; measured with {1 + len(queries)} requests"
    for query, total in zip(queries, totals, strict=True):
        assert f"  search {query.text}: {total:,}" in lines
    table = lines[lines.index("") + 1 : lines.index("") + 7]
    assert table[0].split()[:3] == ["path", "API", "requests"] and "hours at 40/s and 1/s" in table[0]
    assert [row.split()[0] for row in table[1:]] == ["full", "csv", "csv+listing", "search", "csv+search"]
    assert len({len(row) for row in table}) == 1  # aligned
    assert table[1].split()[1] == "1,501"  # the listing and every lookup
    assert "recommended: csv+search" in result.output
    start = lines.index(next(line for line in lines if line.startswith("recommended:")))
    commands = [line.strip() for line in lines[start + 1 :]]
    assert commands == [  # shell-quoted; at the --rate it was priced at (images: one --rate per host, 1 here)
        f"metdata ingest --from-csv {csv} --data '/tmp/my root'",
        f"metdata ids --target painting-culture --add --api {met.url} --data '/tmp/my root' --rate 40",
        f"metdata ingest --api {met.url} --data '/tmp/my root' --rate 40",
        f"metdata images --target painting-culture --api {met.url} --data '/tmp/my root'",
    ]
    assert all(shlex.split(c)[shlex.split(c).index("--data") + 1] == "/tmp/my root" for c in commands)
    assert "estimated:" in result.output and "CSV rows ≈ 1,400 (its size" in result.output

    as_json = CliRunner().invoke(main, [*args, "--json", "--rate", "20", "--image-rate", "4"])
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.output)
    assert plan["recommended"] == "csv+search" and plan["rate"] == 20 and plan["image_rate"] == 4
    best = next(p for p in plan["paths"] if p["path"] == "csv+search")
    assert best["commands"][1].endswith("--rate 20") and best["commands"][3].endswith("--rate 4")
    assert plan["facts"]["listed"] == 1500 and [t for _, t in plan["facts"]["queries"]] == totals
    full = plan["paths"][0]
    assert full["path"] == "full" and full["api_requests"] == 1501
    assert full["hours"] == pytest.approx(1501 / 20 / 3600 + full["image_requests"] / 4 / 3600)

    honest = CliRunner().invoke(main, ["plan", "--target", "object-type", "--api", met.url, "--rate", "40"])
    assert honest.exit_code == 0 and "no search queries: Every object" in honest.output
    assert "search hasImages=true:" in honest.output and "csv+search" not in honest.output
    for bad, message in (
        (["--target", "paintings", "--api", met.url], "unknown target 'paintings'"),
        (["--target", "painting-culture", "--api", met.base], "does not end in /v1"),
        (["--target", "painting-culture", "--api", met.url, "--from-csv", str(tmp_path / "no.csv")], "cannot read"),
    ):
        failed = CliRunner().invoke(main, ["plan", *bad])
        assert failed.exit_code == 1 and message in failed.output, failed.output


def test_a_csv_of_unknown_size_is_not_said_to_be_318_mb():
    from metdata.acquire.plan import Facts, price

    unknown = {c.path: c for c in price(Facts("t", 500_000, (("medium=Paintings", 10_000),)))}
    assert "size not stated" in unknown["csv"].how and "MB" not in unknown["csv"].how
    known = {c.path: c for c in price(Facts("t", 500_000, (("medium=Paintings", 10_000),), csv_bytes=50_000_000))}
    assert "(50 MB," in known["csv"].how


def test_ingest_target_needs_since_and_an_existing_target(tmp_path):
    runner = CliRunner()
    alone = runner.invoke(main, ["ingest", "--data", str(tmp_path), "--target", "painting-culture"])
    assert alone.exit_code == 2 and "give --since DATE too" in alone.output
    unknown = runner.invoke(main, ["ingest", "--data", str(tmp_path), "--since", "2024-01-01", "--target", "x"])
    assert unknown.exit_code == 1 and "unknown target 'x'" in unknown.output
    assert not written(tmp_path)


def test_a_service_whose_totals_never_fit_is_bounded(misbehaving, monkeypatch):
    import metdata.acquire.search

    huge = misbehaving(lambda p: {"total": 10**12, "objectIDs": None})
    with pytest.raises(SearchError, match="no count of the Met's objects"):
        read(huge.url, "q=x")
    assert len(huge.seen) == 1
    # sub-totals that always add up and never fit: the request cap ends it
    monkeypatch.setattr(metdata.acquire.search, "MAX_REQUESTS", 300)

    def endless(params: dict) -> dict:  # every split adds up, none ever fits the window
        total = 19 * 2**17 // (19 if "departmentId" in params else 1)
        total //= 2 ** sum(k in params for k in ("hasImages", "isOnView", "isHighlight"))
        if "dateBegin" in params:  # every object in the first date window, half in each of its halves
            begin, end = int(params["dateBegin"]), int(params["dateEnd"])
            first, last = begin == -400_000, end == -1
            total = total if first and last else total // 2 if first else total - total // 2 if last else 0
        page = paged(total, params)
        base = hash(frozenset((k, v) for k, v in params.items() if k not in ("offset", "limit"))) % 10**6 * 10**5
        return {"total": total, "objectIDs": [base + i for i in page["objectIDs"]] if page["objectIDs"] else None}

    server = misbehaving(endless)
    with pytest.raises(SearchError, match="more than 300 search requests"):
        read(server.url, "q=x")
    assert len(server.seen) == 300


def test_split_parts_that_share_ids_are_an_error(misbehaving):
    def overlapping(params: dict) -> dict:
        if "departmentId" in params:
            size = 10_001 if params["departmentId"] == "1" else 0
            return (
                paged(size, params)
                if "hasImages" not in params
                else paged(5_000 + (params["hasImages"] == "true"), params)
            )
        return paged(10_001, params)

    server = misbehaving(overlapping)
    with pytest.raises(SearchQueryError, match="holds 5001 distinct ids where its total says 10001"):
        read(server.url, "q=x")


def test_a_listing_record_that_cannot_be_written_leaves_the_old_pair(met, tmp_path):
    root = tmp_path / "data"
    assert ids_cli(met.url, root, "--search", "departmentId=11").exit_code == 0
    listing = (root / "ids" / "listing.parquet").read_bytes()
    record = root / "ids" / "_listing.json"
    record.unlink()
    record.mkdir()  # the record cannot be replaced
    result = ids_cli(met.url, root, "--search", "departmentId=6")
    assert result.exit_code == 1 and "could not be written" in result.output and "the old one is kept" in result.output
    assert not isinstance(result.exception, IsADirectoryError), result.exception
    assert (root / "ids" / "listing.parquet").read_bytes() == listing and record.is_dir()
    assert not [p for p in (root / "ids").iterdir() if p.name.endswith(".tmp")]
    # the first ever listing is removed, not left without its record
    fresh = tmp_path / "fresh"
    (fresh / "ids" / "_listing.json").mkdir(parents=True)
    result = ids_cli(met.url, fresh, "--search", "departmentId=6")
    assert result.exit_code == 1 and "could not be written" in result.output
    assert not (fresh / "ids" / "listing.parquet").exists()


def test_a_targets_candidates_are_merged_along_add_and_replaced_without(start_met, tmp_path):
    from metdata.acquire.listing import read_candidates
    from metdata.core.targets import builtin

    met = start_met(objects=1500, seed=4)
    root = tmp_path / "data"
    dataset = Dataset(str(root))
    target: set[int] = set()
    for query in builtin("painting-culture").search.queries:
        target |= search_hits(met, query.text)[1]
    extra = search_hits(met, "departmentId=11")[1]
    assert extra - target
    assert ids_cli(met.url, root, "--target", "painting-culture", "--search", "departmentId=11").exit_code == 0
    assert set(read_candidates(dataset, "painting-culture")) == target | extra
    assert ids_cli(met.url, root, "--search", "departmentId=14&geoLocation=India", "--add").exit_code == 0
    assert ids_cli(met.url, root, "--target", "painting-culture", "--add").exit_code == 0  # the chain names it
    assert set(read_candidates(dataset, "painting-culture")) == target | extra
    assert read_listing_meta(dataset)["search"]["candidates"] == len(target | extra)
    assert ids_cli(met.url, root, "--target", "painting-culture").exit_code == 0  # replaced with the listing
    assert set(read_candidates(dataset, "painting-culture")) == target
