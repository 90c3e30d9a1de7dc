"""Does ingestion hold its configured rate against the real bot protection, without a block?

Two emulators with the bot protection at the real defaults (40 requests per 30 s window per
client and host, then blocked 60 s; a budget of about 1.33 requests/s) and 0.3 s added to every
answer. On a Dask LocalCluster of 2 workers:

- metdata: ``metdata.jobs.ingest.run`` with ``--rate`` R, one budget held by the scheduler for every
  task on every worker. R is below the budget, so it must never be blocked, and it should reach
  R: achieved/configured >= 0.95.
- baseline (the naive approach, "per-worker sleeps"): one task pinned to each worker, each
  pacing itself at R with its own ``LocalPacer``. Together they offer 2R, over the budget, and
  get blocked. It stops at the first block (or after ``--baseline-seconds``) and runs against
  its own emulator, so its block cannot touch the metdata figure.

The achieved rate is measured from the emulator's request counter, sampled every 20 ms: the
pace between the first and the last lookup the emulator saw, (requests - 1) / (t_last -
t_first). The listing is snapshotted from the catalog beforehand, so every request counted is
an object lookup. The run summary's own ``achieved_rate`` (requests / the whole run, planning
and the last answer's latency included) is printed beside it.

    python benchmarks/ingest_rate.py [--rate 1.2] [--objects 110] [--shard-size 10]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time

from distributed import Event

from metdata.acquire import listing
from metdata.acquire.lookup import LookupOptions, lookup_ids
from metdata.cluster import connect
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.jobs.ingest import IngestOptions, run
from metdata.net.pacing import LocalPacer, PaceConfig
from metdata.storage.dataset import Dataset

WINDOW, BURST, PENALTY = 30.0, 40, 60.0  # the emulator's defaults, inside the measured range
BUDGET = BURST / WINDOW  # requests/s the protection tolerates, sustained


class CounterSampler:
    """Samples the emulator's ``api`` counters in a background thread; a context manager."""

    def __init__(self, met: MetEmulator, every: float = 0.02) -> None:
        self.met, self.every = met, every
        self.samples: list[tuple[float, int, int]] = []  # (monotonic time, requests, blocked)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def read(self) -> tuple[int, int]:
        api = self.met.stats.snapshot().get("api", {})
        return api.get("requests", 0), api.get("blocked", 0)

    def _loop(self) -> None:
        last = None
        while not self._stop.is_set():
            now, counts = time.monotonic(), self.read()
            if counts != last:
                self.samples.append((now, *counts))
                last = counts
            self._stop.wait(self.every)

    def __enter__(self) -> CounterSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), *self.read()))

    @property
    def requests(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    @property
    def blocked(self) -> int:
        return self.samples[-1][2] if self.samples else 0

    def first_block(self) -> tuple[float, int] | None:
        """(time, requests counted by then) of the first sample that saw a block."""
        return next(((t, n) for t, n, b in self.samples if b), None)

    def pace(self, until: tuple[float, int] | None = None) -> tuple[float, float]:
        """(requests/s between the first request and ``until`` or the last one, that span s)."""
        first = next(t for t, n, _ in self.samples if n)
        end, count = until or next((t, n) for t, n, _ in self.samples if n == self.requests)
        span = end - first
        return ((count - 1) / span if span > 0 else float("nan")), span


def paced_alone(ids: list[int], api: str, rate: float, stop_name: str) -> int:
    """The baseline's task: look ids up paced by its own ``LocalPacer`` at ``rate``, until told
    to stop. A block is final (``max_attempts=1``), so no 120 s cool-down delays the stop."""
    pacer = LocalPacer(PaceConfig(rate=rate))
    options = LookupOptions(api=api, max_attempts=1)
    stop = Event(stop_name)
    done = 0
    for start in range(0, len(ids), options.threads):
        if stop.is_set():
            break
        done += len(lookup_ids(ids[start : start + options.threads], options, pacer))
    return done


def emulator(objects: int, latency: float) -> MetEmulator:
    return MetEmulator(
        EmulatorConfig(
            objects=objects,
            mix="dense",
            latency=latency,
            throttle=True,
            throttle_window=WINDOW,
            throttle_burst=BURST,
            throttle_penalty=PENALTY,
        )
    )


def measure_metdata(client, args, root: str) -> dict:
    with emulator(args.objects, args.latency) as met:
        dataset = Dataset(root)
        # Snapshot the listing from the catalog (no request), so every request is a lookup.
        listing.write_listing(dataset, met.catalog.listing(None, None), {})
        options = IngestOptions(
            lookup=LookupOptions(api=met.url),
            pace=PaceConfig(rate=args.rate),
            shard_size=args.shard_size,
        )
        with CounterSampler(met) as sampler:
            summary = run(client, dataset, options)
    achieved, span = sampler.pace()
    return {
        "achieved": achieved,
        "span": span,
        "requests": sampler.requests,
        "blocked": sampler.blocked,
        "summary": summary["this_run"],
    }


def measure_baseline(client, args) -> dict:
    workers = sorted(client.scheduler_info()["workers"])
    with emulator(args.baseline_objects, args.latency) as met:
        ids = sorted(met.catalog.listing(None, None))
        stop_name = f"naive-stop-{time.time_ns()}"
        stop = Event(stop_name, client=client)
        with CounterSampler(met) as sampler:
            futures = [
                client.submit(
                    paced_alone,
                    ids[k :: len(workers)],
                    met.url,
                    args.rate,
                    stop_name,
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                )
                for k, address in enumerate(workers)
            ]
            deadline = time.monotonic() + args.baseline_seconds
            while time.monotonic() < deadline and not sampler.first_block():
                if all(f.done() for f in futures):
                    break
                time.sleep(0.1)
            stop.set()
            client.gather(futures)
    block = sampler.first_block()
    achieved, span = sampler.pace(block)
    return {
        "workers": len(workers),
        "achieved": achieved,
        "span": span,
        "requests": sampler.requests,
        "blocked": sampler.blocked,
        "first_block": span if block else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1.2, help="requests/s (budget: 1.33)")
    parser.add_argument("--objects", type=int, default=110, help="ids the metdata run looks up")
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds added per answer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument("--baseline-objects", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    with (
        tempfile.TemporaryDirectory(prefix="metdata-rate-") as tmp,
        connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as c,
    ):
        ours = measure_metdata(c, args, f"{tmp}/dataset")
        naive = measure_baseline(c, args)

    s = ours["summary"]
    print(
        f"Ingest pacing vs the bot protection ({BURST} requests per {WINDOW:g} s, blocked "
        f"{PENALTY:g} s: budget {BUDGET:.2f}/s), {args.latency:g} s latency, "
        f"{args.workers} workers x {args.threads_per_worker} threads"
    )
    header = f"  {'run':<50} {'configured/s':>12} {'achieved/s':>10} {'ratio':>7}"
    print(header + f" {'x budget':>8} {'blocked':>7}")
    rows = [
        (
            f"metdata, one budget on the scheduler ({ours['requests']} lookups)",
            args.rate,
            ours["achieved"],
            ours["blocked"],
        ),
        (
            f"baseline: own LocalPacer per worker ({naive['requests']} lookups)",
            args.rate,
            naive["achieved"],
            naive["blocked"],
        ),
    ]
    for name, configured, achieved, blocked in rows:
        print(
            f"  {name:<50} {configured:12.2f} {achieved:10.3f} x{achieved / configured:6.3f}"
            f" {achieved / BUDGET:8.2f} {blocked:7d}"
        )
    verdict = "ok" if ours["achieved"] / args.rate >= 0.95 and ours["blocked"] == 0 else "FAIL"
    print(
        f"  metdata: ratio >= 0.95 and 0 blocked: {verdict}. Pace over {ours['span']:.1f} s "
        "from the first to the last lookup.\n"
        f"  The run summary says {s['requests']} requests in {s['duration_s']} s = "
        f"{s['achieved_rate']}/s (whole run), {s['blocks']} blocks reported to the pacer."
    )
    first = naive["first_block"]
    print(
        f"  baseline: {naive['workers']} workers each at {args.rate:g}/s offer "
        f"{naive['workers'] * args.rate:.2f}/s; "
        + (
            f"first block after {first:.1f} s (pace measured up to it);\n  'blocked' counts "
            "every request refused until its tasks stopped."
            if first is not None
            else f"no block within {naive['span']:.0f} s."
        )
    )


if __name__ == "__main__":
    main()
