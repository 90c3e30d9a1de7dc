"""How fast the emulator's ``/v1.1/search`` answers, and what its index costs, before and after
the compact index.

Each emulator runs in its own process (``metdata fake-met --no-throttle``). For each catalog
size: the first search (it builds the index), then ``--pages`` pages of a mix of queries (no
filter, ``medium=Paintings``, a department, ``hasImages``, ``q``, deep offsets), their latency
p50/p95 over HTTP, and the emulator's RSS at the end. The baseline is the emulator of
``--before`` (a git commit; by default the one before the compact index), which generated every
record as a dict at the first search and scanned them all for every page; it runs at the
smallest size only (at 500,000 objects it needs ~2 GB).

With ``--csv``, each "after" emulator then streams its Open Access CSV
(``/openaccess/MetObjects.csv``) once: its size, its rate and the emulator's peak RSS meanwhile,
which must stay near its RSS before (the file is generated as it is sent).

    python benchmarks/emulator_search.py [--objects 100000 500000] [--pages 200] [--before COMMIT] [--csv]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from measure import RssSampler, fake_met

MB = 1024 * 1024
QUERIES = (
    {},
    {"medium": "Paintings"},
    {"departmentId": "6", "hasImages": "true"},
    {"hasImages": "true"},
    {"q": "portrait"},
    {"medium": "Paintings|Oil on canvas", "isHighlight": "false"},
    {"departmentId": "9"},
)
OFFSETS = (0, 500, 4500, 9500)
REPO = Path(__file__).resolve().parent.parent


def stream_csv(base: str, pid: int) -> dict:
    """Read the emulator's CSV once, sampling the emulator's RSS."""
    with (
        RssSampler({"emulator": pid}, every=0.2) as rss,
        requests.get(f"{base}/openaccess/MetObjects.csv", stream=True) as r,
    ):
        r.raise_for_status()
        started, size = time.perf_counter(), 0
        for chunk in r.iter_content(1 << 20):
            size += len(chunk)
        seconds = time.perf_counter() - started
    return {"csv_bytes": size, "csv_seconds": seconds, "csv_peak_rss": rss.peak["emulator"]}


def run(objects: int, pages: int, code: Path | None, csv: bool = False) -> dict:
    """Start an emulator of ``objects`` (from ``code``, or this tree); time the first search and ``pages`` more."""
    flags = ["--no-throttle", "--objects", str(objects)]
    if code is None:  # an older tree has no --mix: its one catalog is the dense mix
        flags += ["--mix", "dense"]
    with fake_met(*flags, code=code) as (url, process), requests.Session() as http:
        search = url.replace("/v1", "/v1.1") + "/search"
        started = time.perf_counter()
        first = http.get(search, params={"limit": 500}, timeout=600).json()
        build = time.perf_counter() - started
        latencies = []
        for params, offset in itertools.islice(itertools.cycle(itertools.product(QUERIES, OFFSETS)), pages):
            started = time.perf_counter()
            answer = http.get(search, params={**params, "offset": offset, "limit": 500}, timeout=600)
            answer.raise_for_status()
            latencies.append(time.perf_counter() - started)
        rss = process.memory_info().rss
        csv_figures = stream_csv(url.removesuffix("/public/collection/v1"), process.pid) if csv else {}
    cuts = statistics.quantiles(latencies, n=20)
    return {"total": first["total"], "build": build, "p50": cuts[9], "p95": cuts[18], "rss": rss, **csv_figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--pages", type=int, default=200, help="timed pages per size (after the first search)")
    parser.add_argument("--before", default="34884f4", help="the baseline's git commit; '' to skip it")
    parser.add_argument("--csv", action="store_true", help="also stream each emulator's Open Access CSV once")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="metdata-before-") as tmp:
        if args.before:
            archive = subprocess.run(["git", "archive", args.before], cwd=REPO, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            # the old scan is slow per page: fewer pages, the same query mix
            rows.append(("before", min(args.objects), run(min(args.objects), max(20, args.pages // 10), Path(tmp))))
    for n in args.objects:
        rows.append(("after", n, run(n, args.pages, None, args.csv)))

    print(f"Met emulator search, in its own process ({args.pages} pages of 500 per size; {len(QUERIES)} queries)")
    print(
        f"  {'emulator':<8} {'objects':>8} {'index':>8} {'first search s':>14} {'page p50 ms':>11} {'p95 ms':>7}"
        f" {'RSS MB':>7} {'p50 x before':>12}"
    )
    base = rows[0][2]["p50"] if rows[0][0] == "before" else None
    for name, n, r in rows:
        ratio = f"x{base / r['p50']:.0f} faster" if base and name == "after" and n == rows[0][1] else ""
        print(
            f"  {name:<8} {n:8d} {r['total']:8d} {r['build']:14.1f} {1000 * r['p50']:11.1f} {1000 * r['p95']:7.1f}"
            f" {r['rss'] / MB:7.0f} {ratio:>12}"
        )
    for _, n, r in rows:
        if "csv_bytes" in r:
            print(
                f"  CSV of {n} objects: {r['csv_bytes'] / MB:.0f} MB in {r['csv_seconds']:.0f} s"
                f" ({r['csv_bytes'] / MB / r['csv_seconds']:.1f} MB/s); emulator RSS {r['rss'] / MB:.0f} MB before,"
                f" peak {r['csv_peak_rss'] / MB:.0f} MB while streaming"
            )


if __name__ == "__main__":
    main()
