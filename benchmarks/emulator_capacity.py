"""How fast the Met emulator answers on this machine, so later benchmarks can show it is not
their bottleneck.

Measures JSON lookups/s and web-large images/s (each image drawn for the first time, i.e. the
emulator's worst case), first with the blog's approach (one request at a time, a new connection
each) as the baseline, then with pooled keep-alive sessions on several threads. Prints each
figure and its ratio to the baseline measured in the same run, and to the real service's pace.

    python benchmarks/emulator_capacity.py [--seconds 5] [--threads 8]
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from metdata.emulator import EmulatorConfig, MetEmulator

REAL_SAFE_PACE = 1.0  # requests/s per IP that the real Met tolerates
REAL_DOCUMENTED = 80.0  # requests/s the documentation asks to stay under


def measure(urls, seconds: float, threads: int, pooled: bool) -> float:
    """Requests per second over ``seconds``, fetching ``urls`` in order, on ``threads`` threads."""
    source = iter(urls)
    lock = threading.Lock()
    done = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        session = requests.Session() if pooled else None
        while time.perf_counter() < deadline:
            with lock:
                url = next(source)
            response = session.get(url, timeout=30) if session else requests.get(url, timeout=30)
            response.raise_for_status()
            with lock:
                done[0] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return done[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--objects", type=int, default=200_000)
    args = parser.parse_args()

    with MetEmulator(EmulatorConfig(objects=args.objects, throttle=False)) as met:
        ids = requests.get(f"{met.url}/objects", timeout=60).json()["objectIDs"]
        catalog = met.catalog
        lookups = itertools.cycle(f"{met.url}/objects/{i}" for i in ids)
        image_paths = (
            catalog.record(i)["primaryImageSmall"].replace("https://images.metmuseum.org", met.base)
            for i in itertools.cycle(ids)
            if catalog.record(i)["isPublicDomain"]
        )
        rows = []
        base_json = measure(lookups, args.seconds, 1, pooled=False)
        rows.append(("lookups/s, sequential, new connection each (baseline)", base_json, base_json))
        rows.append(
            (
                "lookups/s, pooled sessions",
                measure(lookups, args.seconds, args.threads, True),
                base_json,
            )
        )
        base_img = measure(image_paths, args.seconds, 1, pooled=False)
        rows.append(("images/s, sequential, new connection each (baseline)", base_img, base_img))
        rows.append(
            (
                "images/s, pooled sessions",
                measure(image_paths, args.seconds, args.threads, True),
                base_img,
            )
        )

    print(f"Met emulator capacity ({args.objects} objects, {args.threads} client threads, ", end="")
    print(f"{args.seconds:g} s each)")
    for name, rate, base in rows:
        print(
            f"  {name:<55} {rate:8.1f}  x{rate / base:5.2f} vs baseline"
            f"  x{rate / REAL_SAFE_PACE:7.0f} the real safe pace"
            f"  x{rate / REAL_DOCUMENTED:5.1f} the documented 80/s"
        )


if __name__ == "__main__":
    main()
