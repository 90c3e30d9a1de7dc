"""Time to a first model's data, by path (issue 21): full crawl, CSV, search, CSV + search.

One emulator (``--objects``, default 50,000, the calibrated ``real`` mix, no bot protection, no
faults) serves every path; each path runs the commands a user would run (``metdata ...`` as
subprocesses, ``--rate`` per host), on its own dataset root:

- **full**: ``ids`` → ``ingest`` (every object) → ``images --target``;
- **csv**: ``ingest --from-csv`` (the emulator's Open Access CSV, by URL) → ``images --target``
  (which looks up the CSV rows it selects);
- **search**: ``ids --target`` → ``ingest`` (the candidates) → ``images --target``;
- **csv+search**: ``ingest --from-csv`` → ``ids --target --add`` → ``ingest`` (the candidates the
  CSV lacks) → ``images --target``.

For each path it prints the requests each host saw (counted by the emulator), the wall time at the
emulator's rate, and the **recall** of the path's images (objects with an ``ok`` image) against the
full crawl's, the baseline measured in the same run. Then the hours each path would take against
the real Met at 1 request/s per host: each command's requests per host scaled by the real listing's
size over the emulator's (502,886 objects in October 2026, ``shared/met-api-facts.md``; the catalog's
mix is calibrated so that the proportions carry over: paintings ~2 % of objects, ~60 % of them public
domain), the two hosts in parallel within a command, the commands one after another. Those hours are
arithmetic on measured proportions, not a measurement against the real service.

Usage::

    python benchmarks/time_to_model.py                      # 50,000 objects at 80/s: ~15 min
    python benchmarks/time_to_model.py --objects 10000      # quicker
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads
import requests

from metdata.emulator import EmulatorConfig, MetEmulator

TARGET = "painting-culture"
#: The real listing's size (October 2026) and the pace the Met tolerates, per host.
REAL_LISTED = 502_886
REAL_RATE = 1.0
PATHS = ("full", "csv", "search", "csv+search")


def counts(met: MetEmulator) -> dict[str, int]:
    """Requests seen so far by the emulator, per host (``api``, ``images``, ``csv``)."""
    stats = requests.get(f"{met.base}/__emulator__/stats", timeout=30).json()
    return {host: stats.get(host, {}).get("requests", 0) for host in ("api", "images", "csv")}


def commands(path: str, met: MetEmulator, root: Path, rate: float) -> list[list[str]]:
    """The commands a user runs for ``path``."""
    common = ["--api", met.url, "--data", str(root), "--rate", str(rate)]
    ids = ["ids", *common]
    ingest = ["ingest", *common]
    csv = ["ingest", "--data", str(root), "--from-csv", met.csv_url]
    images = ["images", *common, "--target", TARGET, "--size", "64"]
    return {
        "full": [ids, ingest, images],
        "csv": [csv, images],
        "search": [[*ids, "--target", TARGET], ingest, images],
        "csv+search": [csv, [*ids, "--target", TARGET, "--add"], ingest, images],
    }[path]


def run_path(path: str, met: MetEmulator, root: Path, rate: float) -> dict:
    """Run one path's commands; per command: its requests per host and its wall time."""
    steps = []
    for args in commands(path, met, root, rate):
        before, started = counts(met), time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "metdata", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{path}: 'metdata {' '.join(args)}' failed:\n{done.stderr[-3000:]}")
        after = counts(met)
        steps.append(
            {
                "command": args[0]
                + (" --from-csv" if "--from-csv" in args else "")
                + (" --target" * ("--target" in args and args[0] == "ids")),
                "seconds": time.monotonic() - started,
                **{host: after[host] - before[host] for host in after},
            }
        )
    table = pads.dataset(str(root / "images"), format="parquet").to_table(columns=["objectID", "status"])
    ok = {i for i, s in zip(table["objectID"].to_pylist(), table["status"].to_pylist(), strict=True) if s == "ok"}
    return {"steps": steps, "images": ok}


def real_hours(steps: list[dict], listed: int) -> float:
    """Hours at 1 request/s per host on the real collection: each command's requests scaled by the
    real listing's size over the emulator's, the hosts in parallel within a command.

    >>> real_hours([{"api": 100, "images": 50}, {"api": 10, "images": 200}], listed=REAL_LISTED)
    83.81...
    """
    scale = REAL_LISTED / listed
    return sum(max(s["api"], s["images"]) * scale / REAL_RATE for s in steps) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=50_000, help="emulated objects (default 50,000)")
    parser.add_argument("--rate", type=float, default=80.0, help="requests/s per host for every command")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if "full" not in paths:
        raise SystemExit("--paths must include full: it is the baseline of the recall")
    config = EmulatorConfig(objects=args.objects, seed=0, mix="real", throttle=False, prebuild_search=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="metdata-ttm-") as tmp, MetEmulator(config) as met:
        listed = len(requests.get(f"{met.url}/objects", timeout=60).json()["objectIDs"])
        print(f"emulator: {listed:,} objects listed (real mix), metdata at {args.rate:g} requests/s per host")
        for path in paths:
            results[path] = run_path(path, met, Path(tmp) / path.replace("+", "-"), args.rate)
            took = sum(s["seconds"] for s in results[path]["steps"])
            print(f"  {path}: {took:.0f} s, {len(results[path]['images'])} images", flush=True)
    wanted = results["full"]["images"]
    print()
    print(f"painting-culture on {listed:,} emulated objects, --rate {args.rate:g} per host")
    head = (
        f"{'path':<11} {'API req':>8} {'image req':>9} {'CSV req':>7} {'wall s':>7} {'images':>6} "
        f"{'recall':>6} {'vs full':>7} {'real h at 1/s':>13}"
    )
    print(head)
    full_api = sum(s["api"] for s in results["full"]["steps"])
    for path in paths:
        steps = results[path]["steps"]
        api, images, csv = (sum(s[h] for s in steps) for h in ("api", "images", "csv"))
        got = results[path]["images"]
        recall = len(got & wanted) / len(wanted) if wanted else float("nan")
        print(
            f"{path:<11} {api:>8,} {images:>9,} {csv:>7,} {sum(s['seconds'] for s in steps):>7.0f} "
            f"{len(got):>6,} {recall:>6.3f} {api / full_api:>7.3f} {real_hours(steps, listed):>13.1f}"
        )
    print()
    print("per command (requests per host, seconds):")
    for path in paths:
        line = "; ".join(
            f"{s['command']} {s['api']}/{s['images']} in {s['seconds']:.0f} s" for s in results[path]["steps"]
        )
        print(f"  {path}: {line}")
    print(
        f"\nreal h: each command's requests x {REAL_LISTED:,} / {listed:,} objects at {REAL_RATE:g}/s per host, "
        "the API and image hosts in parallel within a command, commands in sequence (arithmetic, not measured)"
    )


if __name__ == "__main__":
    main()
