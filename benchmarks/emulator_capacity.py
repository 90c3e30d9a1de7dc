"""How fast the Met emulator answers on this machine, so later benchmarks can show it is not
their bottleneck.

The emulator runs in its own process (``metdata fake-met --no-throttle``), so the client threads
here do not compete with it for the GIL and its CPU is read from its process alone.

- JSON lookups/s: the blog's approach (one request at a time, a new connection each) as the
  baseline, then pooled keep-alive sessions on ``--threads`` threads.
- Web-large images: ``--images`` distinct images (more than the 512 drawings the emulator used to
  keep) fetched twice by the pooled threads. The first pass draws each image (the emulator's worst
  case); the second pass is what a benchmark's rerun, a retry or a second store sees: served from
  the emulator's cache when it holds the whole working set, drawn again when it does not.

Prints each rate, its ratio to the baseline measured in the same run and to the real service's
pace, the emulator's CPU ms per answer, and its RSS at the end (the cache's memory).

    python benchmarks/emulator_capacity.py [--seconds 5] [--threads 8] [--images 1000]
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from measure import fake_met, process_cpu

from metdata.emulator.catalog import Synthetic
from metdata.emulator.synthetic import IMAGE_HOST

REAL_SAFE_PACE = 1.0  # requests/s per IP that the real Met tolerates
REAL_DOCUMENTED = 80.0  # requests/s the documentation asks to stay under
MB = 1024 * 1024


def measure(urls, threads: int, pooled: bool, seconds: float | None = None) -> tuple[int, float]:
    """Fetch ``urls`` in order on ``threads`` threads, until they run out or ``seconds`` pass;
    return (answers, wall seconds). Every answer must be a 200."""
    source = iter(urls)
    lock = threading.Lock()
    done = [0]
    deadline = time.perf_counter() + seconds if seconds else float("inf")

    def worker() -> None:
        session = requests.Session() if pooled else None
        while time.perf_counter() < deadline:
            with lock:
                url = next(source, None)
            if url is None:
                return
            response = session.get(url, timeout=60) if session else requests.get(url, timeout=60)
            response.raise_for_status()
            with lock:
                done[0] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return done[0], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each lookup measurement")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=1000, help="distinct web-large images, fetched twice")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    catalog = Synthetic(args.objects, args.seed, "dense")  # records only: where the images are
    ids = catalog.ids.tolist()
    flags = ("--no-throttle", "--objects", str(args.objects), "--seed", str(args.seed), "--mix", "dense")
    rows = []
    with fake_met(*flags) as (url, met):
        base = url.removesuffix("/public/collection/v1")
        paths = itertools.islice(
            (r["primaryImageSmall"] for r in map(catalog.record, ids) if r["primaryImageSmall"]), args.images
        )
        images = [p.replace(IMAGE_HOST, base) for p in paths]
        lookups = itertools.cycle(f"{url}/objects/{i}" for i in ids)

        def row(name: str, urls, threads: int, pooled: bool, seconds: float | None = None) -> None:
            cpu = process_cpu(met)
            n, wall = measure(urls, threads, pooled, seconds)
            rows.append((name, n, n / wall, (process_cpu(met) - cpu) / n))

        row("lookups/s, sequential, new connection each (baseline)", lookups, 1, False, args.seconds)
        row(f"lookups/s, pooled sessions, {args.threads} threads", lookups, args.threads, True, args.seconds)
        row(f"images/s, {len(images)} distinct, first pass (each drawn)", images, args.threads, True)
        row(f"images/s, the same {len(images)} again (second pass)", images, args.threads, True)
        rss = met.memory_info().rss

    print(
        f"Met emulator capacity, in its own process ({args.objects} objects, {args.threads} client threads, "
        f"lookups {args.seconds:g} s each, {len(images)} web-large images twice)"
    )
    print(
        f"  {'run':<58} {'answers':>7} {'per s':>8} {'x base':>7} {'x real safe':>11} {'x 80/s':>6}"
        f" {'emulator CPU ms':>15}"
    )
    baseline = rows[0][2]
    for name, n, rate, cpu in rows:
        print(
            f"  {name:<58} {n:7d} {rate:8.1f} x{rate / baseline:6.2f} x{rate / REAL_SAFE_PACE:10.0f}"
            f" x{rate / REAL_DOCUMENTED:5.1f} {1000 * cpu:15.2f}"
        )
    print(f"  emulator RSS at the end: {rss / MB:.0f} MB")


if __name__ == "__main__":
    main()
