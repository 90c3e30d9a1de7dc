"""The images stage under the emulator's fault mix (issue 24): how much of the budget it spends.

A replay catalog of about ``--images`` web-large images is drawn beforehand (the emulator only
reads files). Metadata is ingested from a clean emulator; then, on the same address, an emulator
with ``--fault-rate`` (default 0.05) of every fault kind, ``slow`` answers held ``--slow-seconds``
(default 30, the client's timeout): ``metdata.jobs.images.plan`` + ``run`` at ``--rate`` (default
80) on a LocalCluster of ``--workers`` x ``--threads-per-worker``, worker processes (``--in-process``:
in this process, as ``metdata images`` runs it by default since issue 24).

Prints, counted at the emulator's image host (its request counter polled every 50 ms):

- the pace over the active window (first request to last) and up to 95 % of the requests (the
  steady state: the tail is retry chains waiting out their timeout and backoff), as requests/s
  and as a fraction of ``--rate``;
- images/s (slots with a final status / wall time) and the statuses: every slot must have
  exactly one status row (checked: rows == slots, no objectID twice);
- the longest gap between two progress lines (``metdata.core.progress``) during the run.

``--cap`` bounds the run (interrupted as Ctrl-C would); the row is then marked CAPPED.

    python benchmarks/images_faults.py [--images 1000] [--rate 80] [--cap 600]

Old code against the current emulator: ``cd OLD && PYTHONPATH=OLD python NEW/benchmarks/images_faults.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # before distributed is imported

import pyarrow.dataset as pads
from acquire_budget import IMAGES_PER_OBJECT, cluster, emulator, measured
from images_pipeline import write_replay
from measure import free_port

from metdata.acquire.lookup import LookupOptions
from metdata.cluster import connect
from metdata.images.images import ImageOptions
from metdata.jobs import images as images_job
from metdata.jobs.ingest import IngestOptions
from metdata.jobs.ingest import run as ingest_run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset

log = logging.getLogger("images_faults")
FAULTS = "500,502,503,slow,drop,image-404,truncate,not-image"


class ProgressTimes(logging.Handler):
    """Records when each progress line was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.times.append(time.monotonic())


@contextlib.contextmanager
def in_process(args):
    """``acquire_budget.cluster``'s ``(client, worker processes)`` for a LocalCluster in this process."""
    with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker, processes=False) as client:
        yield client, []  # no other process: its CPU is this one's (``measured``'s cpu_here)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="about this many images")
    parser.add_argument("--rate", type=float, default=80.0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="the client's timeout")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--late-after", type=float, help="ImageOptions.late_after (default: its default)")
    parser.add_argument("--cap", type=float, default=600.0, help="seconds at most for the run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--in-process", action="store_true", help="the LocalCluster's workers in this process")
    parser.add_argument("--emulator-code", default=str(Path(__file__).resolve().parents[1]), help="source tree")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    progress = ProgressTimes()
    logging.getLogger("metdata.core.progress").addHandler(progress)

    with tempfile.TemporaryDirectory(prefix="metdata-images-faults-") as tmp:
        objects = round(args.images / IMAGES_PER_OBJECT)
        drawn = write_replay(Path(tmp) / "replay", objects, 0)
        served = ("--no-throttle", "--catalog", f"{tmp}/replay", "--port", str(free_port()))
        dataset = Dataset(f"{tmp}/dataset")
        with in_process(args) if args.in_process else cluster(args) as cw:
            client, _ = cw
            with emulator(args, *served) as (url, _, _):
                lookup = LookupOptions(api=url, timeout=args.timeout)
                ingest_run(client, dataset, IngestOptions(lookup=lookup, pace=PaceConfig(rate=1e4)))
            faulty = ("--faults", FAULTS, "--fault-rate", str(args.fault_rate))
            faulty += ("--slow-seconds", str(args.slow_seconds))
            with emulator(args, *served, *faulty, "--latency", str(args.latency)) as (url, base, _):
                options = ImageOptions(
                    lookup=LookupOptions(api=url, timeout=args.timeout),
                    allowed_hosts=frozenset({"images.metmuseum.org", urlsplit(url).netloc}),
                )
                if args.late_after is not None:
                    options = replace(options, late_after=args.late_after)
                planned = images_job.plan(dataset, options)
                progress.times.clear()
                pace = PaceConfig(rate=args.rate)
                out = measured(
                    cw, base, "images", args.cap, lambda: images_job.run(client, dataset, options, pace, planned)
                )
                ended = time.monotonic()
        rows = pads.dataset(f"{tmp}/dataset/images", format="parquet").to_table(columns=["objectID", "status"])
        ids = rows["objectID"].to_pylist()
        statuses = Counter(rows["status"].to_pylist())
    pace95, span95 = out["pace95"], out["span95"]
    times = [ended - out["wall"], *progress.times, ended]
    gap = max(b - a for a, b in itertools.pairwise(times))
    capped = " CAPPED" if out["capped"] else ""
    print(
        f"Images under the fault mix ({FAULTS} at {args.fault_rate:g} each, slow answers held "
        f"{args.slow_seconds:g} s, client timeout {args.timeout:g} s, latency {args.latency:g} s), "
        f"--rate {args.rate:g}, {args.workers} workers x {args.threads_per_worker} threads, "
        f"{planned.selected} images selected ({drawn} drawn){capped}"
    )
    print(
        f"  requests at the image host: {out['requests']} in {out['span']:.1f} s = {out['pace']:.1f}/s "
        f"(x{out['pace'] / args.rate:.2f} of the budget); up to 95 % of them: {pace95:.1f}/s "
        f"(x{pace95 / args.rate:.2f}) in {span95:.1f} s"
    )
    print(
        f"  images: {len(ids)} slots with a row of {planned.selected} selected "
        f"({'each once' if len(set(ids)) == len(ids) else 'SOME TWICE'}), "
        f"{len(ids) / out['wall']:.1f} images/s over the run's {out['wall']:.1f} s; {dict(statuses)}"
    )
    print(f"  longest gap between progress lines: {gap:.1f} s ({len(progress.times)} lines)")
    print(f"  CPU: {out['cpu']:.1f} s = {1000 * out['cpu'] / max(1, len(ids)):.2f} ms/image (Dask processes)")


if __name__ == "__main__":
    main()
