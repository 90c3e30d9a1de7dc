"""Lookups under the emulator's fault mix (issue 24): how much of the budget ``metdata ingest`` spends.

One emulator config, started afresh (its own process, same seed) for each run: ``--ids`` objects,
``--fault-rate`` (default 0.05) of every fault kind, ``slow`` answers held ``--slow-seconds``
(default 30, the client's timeout), no throttle. ``metdata.jobs.ingest.run`` of the snapshotted
listing, as the CLI runs it, on a LocalCluster of ``--workers`` x ``--threads-per-worker``, each
run into a fresh dataset:

- **before**: ``IngestOptions.late_after`` None: each shard task waits for its slowest answer
  (the behaviour before the tail was handed on; progress is per id in both);
- **after**: the default ``late_after``: a shard task hands its tail to a follow-up task.

At ``--rate 0`` (no limit) the budget is what the host gives: a first run **without faults**
(same ids, same cluster) measures it, and the fault-mix runs are compared with that pace.

Prints, counted at the emulator's API (its request counter polled every 50 ms): the pace over the
active window (first request to last) and up to 95 % of the requests (the steady state: the tail
is retry chains waiting out their timeouts and backoffs), as requests/s and as a fraction of the
budget; rows/s over the run; whether every id has exactly one row (rows == ids, no id twice, no row
left "pending"); the follow-up tasks; the longest gap between two progress lines.

``--cap`` bounds each run (interrupted as Ctrl-C would); the row is then marked CAPPED.

    python benchmarks/ingest_faults.py [--ids 4000] [--rate 80] [--cap 400] [--runs before,after]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # before distributed is imported

import pyarrow.dataset as pads
from acquire_budget import cluster, emulator, listing, measured
from images_faults import ProgressTimes

from metdata.acquire.listing import write_listing
from metdata.acquire.lookup import LookupOptions
from metdata.jobs.ingest import IngestOptions
from metdata.jobs.ingest import run as ingest_run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset

log = logging.getLogger("ingest_faults")


def one_run(args, cw, flags: tuple[str, ...], late_after: float | None, progress: ProgressTimes) -> dict:
    """One ingest of the first ``--ids`` ids against a fresh emulator with ``flags``."""
    client, _ = cw
    with emulator(args, *flags) as (url, base, _), tempfile.TemporaryDirectory(prefix="metdata-faults-") as tmp:
        ids = listing(url, args.ids)
        dataset = Dataset(f"{tmp}/dataset")
        write_listing(dataset, ids, {})
        options = IngestOptions(
            lookup=LookupOptions(api=url, timeout=args.timeout), pace=PaceConfig(rate=args.rate), late_after=late_after
        )
        progress.times.clear()
        out = measured(cw, base, "api", args.cap, lambda: ingest_run(client, dataset, options))
        ended = time.monotonic()
        rows = pads.dataset(f"{tmp}/dataset/objects", format="parquet").to_table(columns=["objectID", "error"])
    got = rows["objectID"].to_pylist()
    pending = sum("pending" in (e or "") for e in rows["error"].to_pylist())
    times = [ended - out["wall"], *progress.times, ended]
    this_run = (out["summary"] or {}).get("this_run", {})
    out.update(
        ids=len(ids),
        rows=len(got),
        once=len(set(got)) == len(got) == len(ids) and set(got) == set(ids),
        twice=len(set(got)) != len(got),
        pending=pending,
        by_status=(out["summary"] or {}).get("rows_by_status"),
        follow_ups=this_run.get("follow_up_tasks", 0),
        gap=max(b - a for a, b in itertools.pairwise(times)),
        lines=len(progress.times),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=80.0, help="0: no limit (the host's pace is measured first)")
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="the client's timeout")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--runs", default="before,after", help="which fault-mix runs, comma-separated")
    parser.add_argument("--cap", type=float, default=400.0, help="seconds at most per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--emulator-code", default=str(Path(__file__).resolve().parents[1]), help="source tree")
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if set(runs) - {"before", "after"}:
        parser.error("--runs: before, after")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    progress = ProgressTimes()
    logging.getLogger("metdata.core.progress").addHandler(progress)

    served = ("--no-throttle", "--objects", str(args.ids), "--seed", "24", "--latency", str(args.latency))
    faulty = ("--faults", "all", "--fault-rate", str(args.fault_rate), "--slow-seconds", str(args.slow_seconds))
    results: dict[str, dict] = {}
    with cluster(args) as cw:
        if args.rate == 0:
            results["no faults"] = one_run(args, cw, served, IngestOptions.late_after, progress)
        for name in runs:
            late_after = None if name == "before" else IngestOptions.late_after
            results[name] = one_run(args, cw, (*served, *faulty), late_after, progress)

    budget = args.rate or results["no faults"]["pace"]
    what = f"--rate {args.rate:g}" if args.rate else f"--rate 0: the host's pace without faults, {budget:.1f}/s"
    print(
        f"Lookups under the fault mix (every kind at {args.fault_rate:g}, slow answers held {args.slow_seconds:g} s, "
        f"client timeout {args.timeout:g} s, latency {args.latency:g} s), {args.ids} ids, {what}, "
        f"{args.workers} workers x {args.threads_per_worker} threads"
    )
    for name, r in results.items():
        capped = " CAPPED" if r["capped"] else ""
        if r["once"]:
            accounted = "each id once"
        elif r["capped"]:
            twice = "SOME ID TWICE" if r["twice"] else "no id twice"
            accounted = f"capped: {r['rows']} rows of {r['ids']} ids so far ({twice})"
        else:
            accounted = f"ROWS {r['rows']} of {r['ids']} ids, NOT each once"
        print(
            f"  {name:<9} requests {r['requests']} in {r['span']:.1f} s = {r['pace']:.1f}/s "
            f"(x{r['pace'] / budget:.2f}); "
            f"up to 95 %: {r['pace95']:.1f}/s (x{r['pace95'] / budget:.2f}) in {r['span95']:.1f} s; "
            f"{r['rows'] / r['wall']:.1f} rows/s over {r['wall']:.1f} s{capped}"
        )
        print(
            f"  {'':<9} {accounted}, {r['pending']} pending; {r['follow_ups']} follow-up tasks; {r['by_status']}; "
            f"longest gap between progress lines {r['gap']:.1f} s ({r['lines']} lines)"
        )
    if "before" in results and "after" in results:
        b, a = results["before"], results["after"]
        print(
            f"  after / before: steady-state pace x{a['pace95'] / b['pace95']:.2f}, "
            f"wall time x{a['wall'] / b['wall']:.2f}"
        )


if __name__ == "__main__":
    main()
