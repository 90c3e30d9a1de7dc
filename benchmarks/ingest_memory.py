"""Does a worker's peak memory stay flat as the number of ids grows?

The emulator runs in its own process (``metdata fake-met --no-throttle --objects LARGE``). Two
ingestion runs, ``--small`` and ``--large`` ids, each on a fresh LocalCluster (so neither run
inherits the other's heap) into a fresh temporary dataset whose listing is snapshotted
beforehand with the first SMALL or LARGE ids of the emulator's listing. A background thread
samples every worker's RSS (psutil, by pid, every ``--every`` s) and keeps the maximum; at the
end each worker also reports its own high-water mark (``VmHWM``), which no sample can miss
(``ru_maxrss`` would not do: a spawned worker inherits its parent's peak). The small run is
the baseline: prints each peak and the ratio large/small (expected ~1.0:
a worker holds one shard of rows at a time, whatever the total).

    python benchmarks/ingest_memory.py [--small 10000] [--large 100000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import psutil
import requests
from measure import RssSampler, fake_met
from measure import peak_rss_bytes as max_rss_bytes

from metdata.acquire import listing
from metdata.acquire.lookup import LookupOptions
from metdata.cluster import connect
from metdata.jobs.ingest import IngestOptions, run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset

MB = 1024 * 1024


def measure(url: str, ids: list[int], args, root: str) -> dict:
    """One ingestion run of ``ids`` on a fresh cluster; the workers' memory along the way."""
    with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as c:
        dataset = Dataset(root)
        listing.write_listing(dataset, ids, {})
        options = IngestOptions(
            lookup=LookupOptions(api=url),
            pace=PaceConfig(rate=args.rate),
            shard_size=args.shard_size,
        )
        pids = c.run(os.getpid)
        start_rss = {w: psutil.Process(p).memory_info().rss for w, p in pids.items()}
        started = time.perf_counter()
        with RssSampler({**pids, "client": os.getpid()}, args.every) as sampler:
            summary = run(c, dataset, options)
        wall = time.perf_counter() - started
        high_water = c.run(max_rss_bytes)
    return {
        "n": summary["this_run"]["ids_looked_up"],
        "ok": summary["this_run"]["by_status"].get("ok", 0),
        "wall": wall,
        "start": max(start_rss.values()),
        "peak": max(sampler.peak[w] for w in pids),
        "high_water": max(high_water.values()),
        "client": sampler.peak["client"],
        "samples": sampler.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="ids of the baseline run")
    parser.add_argument("--large", type=int, default=100_000, help="ids of the large run")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s (the ceiling)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=IngestOptions.shard_size)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between RSS samples")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    results = {}
    with fake_met("--no-throttle", "--mix", "dense", "--objects", str(max(args.small, args.large))) as (url, _emulator):
        ids = sorted(requests.get(f"{url}/objects", timeout=60).json()["objectIDs"])
        for size in (args.small, args.large):
            with tempfile.TemporaryDirectory(prefix="metdata-memory-") as tmp:
                results[size] = measure(url, ids[:size], args, f"{tmp}/dataset")

    print(
        f"Worker memory during ingestion: {args.workers} workers x {args.threads_per_worker} "
        f"threads, shards of {args.shard_size}, --rate {args.rate:g}, RSS sampled every "
        f"{args.every:g} s"
    )
    print(
        f"  {'ids':>8} {'ok':>8} {'lookups/s':>9} {'worker RSS at start':>19}"
        f" {'peak worker RSS':>15} {'x small':>7} {'VmHWM':>9} {'x small':>7}"
        f" {'this process':>12}"
    )
    base = results[args.small]
    for size, r in results.items():
        print(
            f"  {size:8d} {r['ok']:8d} {r['n'] / r['wall']:9.1f} {r['start'] / MB:16.0f} MB"
            f" {r['peak'] / MB:12.0f} MB x{r['peak'] / base['peak']:6.2f}"
            f" {r['high_water'] / MB:6.0f} MB x{r['high_water'] / base['high_water']:6.2f}"
            f" {r['client'] / MB:9.0f} MB"
        )
    print(
        "  peak worker RSS: the largest sample over all workers; VmHWM: the largest worker's own "
        "high-water mark;\n  this process: the scheduler and the client (peak sampled), for "
        "reference"
    )


if __name__ == "__main__":
    main()
