"""``metdata plan``: what each way of getting a target's images costs, learnt cheaply, before a long run.

``gather`` asks what is cheap to ask (the listing's total: one request; each of the target's search
queries' totals: one request each; the Open Access CSV's size, without downloading it); ``price``
(pure) turns those facts into requests per host and hours for each path:

- **full**: list every object, look every one up, then download the target's images;
- **csv**: load ``MetObjects.csv``; the images stage looks up only the public-domain rows the target
  selects, downloading as it goes (the two hosts in parallel); it misses every object newer than the file;
- **search**: ``ids --target`` (the search's pages), look every candidate up, then download;
- **csv+listing**: the CSV, then ``ids`` (the whole listing) so that ``ingest`` looks up every object
  the CSV lacks, whatever the target; the images stage as in **csv**;
- **csv+search**: the CSV, then ``ids --target --add`` so that ``ingest`` looks up only the candidates
  the CSV lacks; the images stage as in **csv**.

Measured: the listing's total, the queries' totals, the CSV's size. Estimated (and said so): the
images (candidates x the public-domain share measured live), the CSV's rows (its size / bytes per
row of the 2023 file), the candidates the CSV holds (its rows / the listing), the search's pages
past the window.

A rate of 0 (no limit, for a host that is not the Met's: a mirror, the emulator) prices nothing:
that host's requests take what it answers, not a budget, so its hours are unknown. They count 0 in
a path's hours, which then cover only the hosts with a rate and are a lower bound (``host_bound``;
"bounded by the host" when nothing else is left); paths are ranked by those hours, then by their
requests (at any pace, fewer requests to the same host end sooner).
"""

from __future__ import annotations

import logging
import math
import shlex
from dataclasses import asdict, dataclass, field, replace

from metdata.acquire.api import DEFAULT_API
from metdata.acquire.opencsv import MET_OBJECTS_CSV_URL
from metdata.core.searchquery import PAGE, WINDOW, Query, page_requests

log = logging.getLogger(__name__)

#: The 2023 file: ~318 MB for 484,215 rows (the facts file).
CSV_BYTES, CSV_ROWS = 318_000_000, 484_215
BYTES_PER_CSV_ROW = CSV_BYTES / CSV_ROWS
#: The 2023 file's rows over the listing of October 2026 (502,886): its share of a listing, when the
#: CSV's size is not known (none given, or a server that does not state it).
CSV_SHARE = CSV_ROWS / 502_886
#: Of the painting hits with hasImages=true, the share that are public domain (6,162 of 14,488,
#: measured live in October 2026): the images a target's candidates may give at most.
PUBLIC_SHARE = 6_162 / 14_488
#: Departments a query over the window is first split by (each sub-query: a total, then its pages).
DEPARTMENT_SPLIT = 19


@dataclass(frozen=True)
class Facts:
    """What ``gather`` learnt (or was given) for one target."""

    target: str
    listed: int
    queries: tuple[tuple[str, int], ...] = ()
    note: str = ""
    csv_url: str = MET_OBJECTS_CSV_URL
    csv_bytes: int | None = None
    requests: int = 0
    #: a target without queries: the total of hasImages=true, the bound of its images
    with_images: int | None = None


@dataclass(frozen=True)
class PathCost:
    """One path's requests per host and hours at the given rates."""

    path: str
    api_requests: int
    image_requests: int
    hours: float
    complete: bool
    how: str
    commands: tuple[str, ...] = ()
    estimated: tuple[str, ...] = field(default_factory=tuple)
    #: some of its requests go to a host with no limit (rate 0): ``hours`` counts only the others (a lower bound)
    host_bound: bool = False

    @property
    def requests(self) -> int:
        return self.api_requests + self.image_requests


def search_requests(total: int) -> int:
    """Requests ``ids`` spends on one query: its pages (the first gives its total); past the window,
    its first page, then a department split, each part's first page giving its total (an estimate:
    a split may need more levels).

    >>> search_requests(0), search_requests(1_200), search_requests(12_000)
    (1, 3, 44)
    """
    if total <= WINDOW:
        return page_requests(total)
    return 1 + math.ceil(total / PAGE) + DEPARTMENT_SPLIT


def hours(requests: int, rate: float) -> float:
    """Hours ``requests`` take at ``rate`` per second; 0 with no limit (rate 0: the host bounds them, not a budget).

    >>> hours(3600, 1.0), hours(0, 2.0), hours(3600, 0)
    (1.0, 0.0, 0.0)
    """
    return requests / rate / 3600 if rate else 0.0


def slower(rate: float, image_rate: float) -> float:
    """The one ``--rate`` of ``metdata images`` (one per host) priced at two: the slower, 0 being no limit.

    >>> slower(40, 4), slower(0, 4), slower(40, 0), slower(0, 0)
    (4, 4, 40, 0)
    """
    limited = [r for r in (rate, image_rate) if r]
    return min(limited) if limited else 0


def rate_label(rate: float) -> str:
    """A rate as the plan prints it.

    >>> rate_label(40), rate_label(0)
    ('40/s', 'no limit')
    """
    return f"{rate:g}/s" if rate else "no limit"


def price(
    facts: Facts, rate: float = 1.0, image_rate: float = 1.0, api: str = "", data: str = "ROOT"
) -> list[PathCost]:
    """Each path's cost (see the module's docstring); pure.

    >>> costs = price(Facts("t", 500_000, (("medium=Paintings", 10_000),)), data="D")
    >>> [(c.path, c.api_requests, round(c.hours, 1)) for c in costs]  # doctest: +NORMALIZE_WHITESPACE
    [('full', 500001, 140.1), ('csv', 4095, 1.1), ('csv+listing', 22660, 6.3),
     ('search', 10020, 4.0), ('csv+search', 4486, 1.3)]
    """
    candidates = sum(total for _, total in facts.queries)
    searched = bool(facts.queries)
    if not searched and facts.with_images is not None:
        candidates = facts.with_images
    images = round(candidates * PUBLIC_SHARE)
    csv_rows = round(facts.csv_bytes / BYTES_PER_CSV_ROW) if facts.csv_bytes else round(facts.listed * CSV_SHARE)
    share = min(1.0, csv_rows / facts.listed) if facts.listed else 1.0
    pages = sum(search_requests(total) for _, total in facts.queries)
    target, api_flag = facts.target, ("--api", api) if api and api != DEFAULT_API else ()
    where = ("--data", data)
    api_rate = ("--rate", f"{rate:g}") if rate != 1 else ()
    # 'metdata images' has one --rate per host: the lower of the two it was priced at
    images_rate = ("--rate", f"{slower(rate, image_rate):g}") if slower(rate, image_rate) != 1 else ()
    images_cmd = command("images", "--target", target, *api_flag, *where, *images_rate)
    csv_cmd = command("ingest", "--from-csv", facts.csv_url, *where)
    ids_cmd = command("ids", *api_flag, *where, *api_rate)
    ingest_cmd = command("ingest", *api_flag, *where, *api_rate)
    csv_size = f"{facts.csv_bytes / 1e6:,.0f} MB" if facts.csv_bytes else "size not stated"
    est_images = f"images ≈ candidates × {PUBLIC_SHARE:.2f} (the public-domain share of painting hits, measured live)"
    est_csv = (
        f"CSV rows ≈ {csv_rows:,} "
        + (
            f"(its size / {BYTES_PER_CSV_ROW:.0f} bytes a row)"
            if facts.csv_bytes
            else f"(the listing × {CSV_SHARE:.3f}, the 2023 file's share of the 2026 listing)"
        )
        + f"; candidates in it ≈ {share:.1%} (its rows / the listing)"
    )
    costs = [
        PathCost(
            "full",
            1 + facts.listed,
            images,
            hours(1 + facts.listed, rate) + hours(images, image_rate),
            True,
            "list every object, look every one up, download the target's images",
            (ids_cmd, ingest_cmd, images_cmd),
            (est_images,),
        )
    ]
    csv_lookups = round(images * share)
    costs.append(
        PathCost(
            "csv",
            csv_lookups,
            csv_lookups,
            max(hours(csv_lookups, rate), hours(csv_lookups, image_rate)),
            False,
            f"load the CSV ({csv_size}, not from the API host); the images "
            f"stage looks up the public-domain rows selected; misses ≈ {max(0, facts.listed - csv_rows):,} "
            "objects newer than the CSV",
            (csv_cmd, images_cmd),
            (est_images, est_csv),
        )
    )
    newer = max(0, facts.listed - csv_rows)
    costs.append(
        PathCost(
            "csv+listing",
            1 + newer + csv_lookups,
            images,
            hours(1 + newer, rate) + max(hours(csv_lookups, rate), hours(images, image_rate)),
            True,
            f"the CSV, then the whole listing so that ingest looks up the ≈ {newer:,} objects the CSV lacks; "
            "the images stage looks up the CSV rows selected",
            (csv_cmd, ids_cmd, ingest_cmd, images_cmd),
            (est_images, est_csv),
        )
    )
    if searched:
        costs.append(
            PathCost(
                "search",
                pages + candidates,
                images,
                hours(pages + candidates, rate) + hours(images, image_rate),
                True,
                f"ids --target ({pages:,} search requests), look up ≤ {candidates:,} candidates, download",
                (command("ids", "--target", target, *api_flag, *where, *api_rate), ingest_cmd, images_cmd),
                (est_images, "candidates ≤ the sum of the query totals (queries overlap)"),
            )
        )
        missing = round(candidates * (1 - share))
        costs.append(
            PathCost(
                "csv+search",
                pages + missing + csv_lookups,
                images,
                hours(pages + missing, rate) + max(hours(csv_lookups, rate), hours(images, image_rate)),
                True,
                f"the CSV, ids --target --add ({pages:,} search requests), look up the ≈ {missing:,} candidates "
                "the CSV lacks; the images stage looks up the CSV rows selected",
                (
                    csv_cmd,
                    command("ids", "--target", target, "--add", *api_flag, *where, *api_rate),
                    ingest_cmd,
                    images_cmd,
                ),
                (est_images, est_csv),
            )
        )
    if rate and image_rate:
        return costs
    return [  # a host without a limit: its hours are not known, only the others' (a lower bound)
        replace(c, host_bound=bool((c.api_requests and not rate) or (c.image_requests and not image_rate)))
        for c in costs
    ]


def command(*args: str) -> str:
    """A ``metdata`` command line, quoted for a POSIX shell.

    >>> command("ingest", "--data", "/tmp/my root")
    "metdata ingest --data '/tmp/my root'"
    """
    return shlex.join(("metdata", *args))


def recommend(costs: list[PathCost]) -> PathCost:
    """The fastest path that misses nothing (a CSV alone misses the objects newer than it): the fewest
    hours, then (hosts without a limit count no hours) the fewest requests.

    >>> recommend(price(Facts("t", 500_000, (("medium=Paintings", 10_000),)))).path
    'csv+search'
    >>> recommend(price(Facts("t", 500_000, (("medium=Paintings", 10_000),)), rate=0, image_rate=0)).path
    'csv+search'
    """
    return min((c for c in costs if c.complete), key=lambda c: (c.hours, c.requests))


def hours_cell(cost: PathCost) -> str:
    """A path's hours as the table shows them: a lower bound (``≥``) when a host without a limit is
    part of it, "host-bound" when only such hosts are (or the others' hours round to 0.0).

    >>> hours_cell(PathCost("p", 10, 0, 1.25, True, ""))
    '1.2'
    >>> hours_cell(PathCost("p", 10, 5, 1.25, True, "", host_bound=True))
    '≥ 1.2'
    >>> hours_cell(PathCost("p", 10, 0, 0.0, True, "", host_bound=True))
    'host-bound'
    >>> hours_cell(PathCost("p", 10, 5, 0.004, True, "", host_bound=True))
    'host-bound'
    """
    if not cost.host_bound:
        return f"{cost.hours:,.1f}"
    return f"≥ {cost.hours:,.1f}" if round(cost.hours, 1) else "host-bound"  # "≥ 0.0" would say nothing


def unlimited_note(rate: float, image_rate: float) -> str | None:
    """What the hours mean when a host has no limit (None when both have one)."""
    hosts = [name for name, r in (("the API host", rate), ("the image host", image_rate)) if not r]
    if not hosts:
        return None
    return (
        f"no limit for {' and '.join(hosts)} (--rate 0): its requests take what the host answers (bounded by "
        "--max-in-flight and its answers), not a budget, so their hours are not priced: 'host-bound' where "
        "they are all of a path (or the rest rounds to 0.0 h), '≥' where the hours count only the hosts with "
        "a rate; paths are ranked by those hours, then by requests. Give a host's measured pace as its rate to "
        "price it in hours."
    )


def render(facts: Facts, costs: list[PathCost], rate: float, image_rate: float) -> str:
    """The plan as an aligned table, the estimates named, the recommended path and its commands."""
    lines = [
        f"target {facts.target}: {facts.listed:,} objects listed; measured with {facts.requests} requests",
    ]
    for query, total in facts.queries:
        lines.append(f"  search {query}: {total:,}")
    if not facts.queries:
        lines.append(f"  no search queries: {facts.note or 'the target has no [search]'}")
        if facts.with_images is not None:
            lines.append(f"  search hasImages=true: {facts.with_images:,} (the bound of its images)")
    head = ("path", "API requests", "image requests", f"hours at {rate_label(rate)} and {rate_label(image_rate)}")
    head += ("complete",)
    rows = [
        (c.path, f"{c.api_requests:,}", f"{c.image_requests:,}", hours_cell(c), "yes" if c.complete else "no")
        for c in costs
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines.append("")
    for row in [head, *rows]:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines.append("")
    for c in costs:
        lines.append(f"{c.path}: {c.how}")
    estimates = sorted({e for c in costs for e in c.estimated})
    lines.append("")
    lines.append("estimated: " + "; ".join(estimates))
    if note := unlimited_note(rate, image_rate):
        lines.append(note)
    best = recommend(costs)
    lines.append("")
    if not best.host_bound:
        lines.append(f"recommended: {best.path}, about {best.hours:,.1f} h. Run:")
    elif round(best.hours, 1):
        lines.append(f"recommended: {best.path}, at least {best.hours:,.1f} h, {best.requests:,} requests. Run:")
    else:
        lines.append(f"recommended: {best.path}, {best.requests:,} requests, bounded by the host. Run:")
    lines.extend(f"  {command}" for command in best.commands)
    return "\n".join(lines)


def as_json(facts: Facts, costs: list[PathCost], rate: float, image_rate: float) -> dict:
    """The plan as JSON: the facts, every path, the recommended one."""
    return {
        "facts": asdict(facts),
        "rate": rate,
        "image_rate": image_rate,
        "unlimited": unlimited_note(rate, image_rate),
        "paths": [asdict(c) for c in costs],
        "recommended": recommend(costs).path,
    }


def gather(target, options, pacer, csv_url: str | None = None, csv_storage_options: dict | None = None) -> Facts:
    """Learn the facts cheaply: the listing (one request), each of the target's queries' totals (one
    request each; a target without queries: the total of ``hasImages=true``, an upper bound), the
    CSV's size (``fsspec`` info: a HEAD, no download).

    Raises:
        ListingError, SearchError: the API could not be read. CsvError: the CSV cannot be reached.
    """
    from metdata.acquire.lookup import fetch_listing
    from metdata.acquire.search import search_url, totals

    search_url(options.api)  # a bad --api fails before any request
    size = _csv_size(csv_url, csv_storage_options or {}) if csv_url else None  # so does a bad CSV
    listed = len(fetch_listing(options, pacer))
    queries = list(target.search.queries)
    found, requests = totals(queries or [Query.parse("hasImages=true")], options, pacer)
    return Facts(
        target=target.name,
        listed=listed,
        queries=tuple((q.text, t) for q, t in zip(queries, found, strict=False)),
        with_images=None if queries else found[0],
        note=target.search.note,
        csv_url=csv_url or MET_OBJECTS_CSV_URL,
        csv_bytes=size,
        requests=1 + requests,
    )


def _csv_size(url: str, storage_options: dict) -> int | None:
    import fsspec

    from metdata.acquire.opencsv import CsvError

    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
        size = fs.info(path).get("size")
    except (OSError, ValueError, ImportError) as exc:
        raise CsvError(f"cannot read the size of the CSV {url} ({type(exc).__name__}: {exc}): check the URL") from exc
    if not isinstance(size, int) or size <= 0:  # a stream without Content-Length: priced as the 2023 file
        log.warning("the CSV %s does not state its size: its rows are estimated from the listing", url)
        return None
    return size


__all__ = ["Facts", "PathCost", "as_json", "gather", "price", "recommend", "render"]
