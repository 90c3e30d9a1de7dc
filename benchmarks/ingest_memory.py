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
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import psutil
import requests

from cluster import connect
from jobs.ingest import IngestOptions, run
from metdata import ingest
from metdata.dataset import Dataset
from metdata.lookup import LookupOptions
from metdata.pacing import PaceConfig

MB = 1024 * 1024


@contextlib.contextmanager
def fake_met(*flags: str) -> Iterator[str]:
    """Run ``metdata fake-met FLAGS`` in a subprocess; yield its API base URL."""
    process = subprocess.Popen([sys.executable, "-m", "metdata", "fake-met", *flags], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"fake-met did not start (first line: {url!r})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def max_rss_bytes() -> int:
    """The calling process's own peak RSS (VmHWM, Linux), not inherited from its parent."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


class RssSampler:
    """Samples the RSS of some processes in a background thread, keeping each one's maximum."""

    def __init__(self, pids: dict[str, int], every: float) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.samples = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.Error):  # a worker restarted mid-run
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(url: str, ids: list[int], args, root: str) -> dict:
    """One ingestion run of ``ids`` on a fresh cluster; the workers' memory along the way."""
    with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as c:
        dataset = Dataset(root)
        ingest.write_listing(dataset, ids, {})
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
    with fake_met("--no-throttle", "--objects", str(max(args.small, args.large))) as url:
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
