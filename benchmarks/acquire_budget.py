"""Acquisition at the full rate budget (issue 13): the benchmark table, in one run.

Every figure is a ratio: achieved / configured, or against a baseline measured in the same run.
metdata is driven through its public job API, as the CLI drives it (``metdata.jobs.ingest.run``,
``metdata.jobs.images.plan`` + ``run`` on a ``metdata.cluster.connect`` LocalCluster of ``--workers`` x
``--threads-per-worker``, default options apart from the API address, the rate and the client
timeout), so the script measures old and new code alike. Each emulator runs in its own process
(``metdata fake-met``, from ``--emulator-code``, by default this script's source tree), so its
CPU counts against no one; each metdata run gets a fresh LocalCluster and dataset.

Rows (``--rows``):

- a: ``--latency`` 0.3, no throttle, ``--rate`` 80, for each of ``--ids``: achieved / configured,
  the achieved pace counted at the emulator (its request counter, polled every 50 ms: (requests -
  1) / (last - first request)), and the run summary's own figure (requests / whole run).
- b: the same with ``--fault-rate`` 0.05 of every fault kind, ``slow`` answers held for the
  client's timeout (``--timeout``, also given to ``LookupOptions.timeout``), for each of
  ``--fault-ids``: requests sent (retries included) / configured over the active window, and up
  to 95 % of the requests (the tail is retries waiting for their timeout or backoff); rows == ids.
- c: the real bot protection (``fake-met`` throttle defaults: 40 requests per 30 s, blocked 60 s),
  ``--throttle-rate`` 1.2, 0.3 s latency, ``--throttle-ids`` ids: achieved / configured and blocks
  (the approach of ``ingest_rate.py``).
- d: no throttle, no latency: the blog's sequential ``requests.get(url).json()`` loop over
  ``--loop-ids`` ids, then metdata over ``--fast-ids`` ids at ``--fast-rate`` (the pipeline's own
  ceiling): lookups/s and CPU ms per lookup, metdata / loop. Then CPU per 1,000 lookups at 0.3 s
  latency: the loop over ``--latency-loop-ids`` ids against row a's 1,000-id run (run here if
  row a did not run 1,000 ids).
- e: images. A replay catalog of about ``--images`` web-large images is drawn beforehand, so the
  emulator only reads files. Metadata is ingested from an emulator without latency; then, on the
  same address, unthrottled: metdata images/s and per core vs a sequential download + decode +
  resize loop (the blog's, ``images_pipeline.baseline``), CPU ms per image; then an emulator
  with 0.3 s latency: ``--rate`` 80, achieved / configured at the image host.

metdata's CPU is every Dask process: the workers (read from /proc) and this process (the
scheduler, the nannies, the client), less the counter-polling thread. The loop's CPU is this
process's.

``--cap`` bounds each metdata run: past it the run is interrupted (as Ctrl-C would) and the row
reports the pace achieved so far, marked "capped".

    python benchmarks/acquire_budget.py [--rows a,b,c,d,e] [--ids 1000,20000] \\
        [--fault-ids 1000,20000] [--cap 900] [--json results.json]

Old code against the current emulator: ``cd OLD && PYTHONPATH=OLD python NEW/benchmarks/acquire_budget.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # before distributed is imported

import psutil
import pyarrow.parquet as pq
import requests
from images_pipeline import baseline as images_loop
from images_pipeline import write_replay
from measure import StatsSampler, fake_met, free_port, total_cpu

from metdata.acquire.listing import write_listing
from metdata.acquire.lookup import LookupOptions
from metdata.cluster import connect
from metdata.images.images import ImageOptions
from metdata.jobs import images as images_job
from metdata.jobs.ingest import IngestOptions
from metdata.jobs.ingest import run as ingest_run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset

log = logging.getLogger("acquire_budget")
API_PATH = "/public/collection/v1"
IMAGES_PER_OBJECT = 0.27  # share of the synthetic catalog's objects with a public image


class Cap:
    """Interrupts the main thread with KeyboardInterrupt (metdata's Ctrl-C path) after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.hit = seconds, False

    def _fire(self, *_: object) -> None:
        self.hit = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def running(self):
        previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            yield self
        except KeyboardInterrupt:
            if not self.hit:
                raise
            log.warning("capped after %g s", self.seconds)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def cluster(args):
    with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as client:
        yield client, [psutil.Process(pid) for pid in client.run(os.getpid).values()]


@contextlib.contextmanager
def emulator(args, *flags: str):
    code = Path(args.emulator_code).resolve() if args.emulator_code else None
    if code is None:  # an emulator from an older tree has only the dense mix, and no --mix
        flags += ("--mix", "dense")
    with fake_met(*flags, code=code) as (url, met):
        yield url, url.removesuffix(API_PATH), met


def listing(url: str, n: int) -> list[int]:
    """The first ``n`` ids of the emulator's listing (asked again past its transient faults)."""
    for _ in range(50):
        with contextlib.suppress(requests.RequestException, ValueError):
            answer = requests.get(f"{url}/objects", timeout=120)
            if answer.status_code == 200:
                return sorted(answer.json()["objectIDs"])[:n]
    raise RuntimeError(f"no listing from {url}")


def measured(client_and_workers, base: str, host: str, cap: float, job) -> dict:
    """Run ``job()`` under the cap while counting the emulator's ``host`` requests; its wall time and
    the CPU of every Dask process (workers + this process less the poller)."""
    _, workers = client_and_workers
    out: dict = {"summary": None}
    with StatsSampler(base, host) as sampler:
        cpu, here, start = total_cpu(workers), time.process_time(), time.perf_counter()
        with Cap(cap).running() as capped:
            out["summary"] = job()
        out["wall"] = time.perf_counter() - start
        out["cpu_workers"] = total_cpu(workers) - cpu
        here = time.process_time() - here
    out["cpu_here"] = here - sampler.cpu
    out["cpu"] = out["cpu_workers"] + out["cpu_here"]
    out["capped"] = capped.hit
    out["requests"] = sampler.count("requests")
    out["blocked"] = sampler.count("blocked")
    out["pace"], out["span"], _ = sampler.pace()
    out["pace95"], out["span95"], _ = sampler.pace(share=0.95)
    return out


def ingest_measured(cw, url: str, base: str, ids: list[int], rate: float, args) -> dict:
    """``metdata.jobs.ingest.run`` of ``ids`` into a fresh dataset (listing snapshotted: only lookups)."""
    client, _ = cw
    with tempfile.TemporaryDirectory(prefix="metdata-acquire-") as tmp:
        dataset = Dataset(f"{tmp}/dataset")
        write_listing(dataset, ids, {})
        options = IngestOptions(lookup=LookupOptions(api=url, timeout=args.timeout), pace=PaceConfig(rate=rate))
        out = measured(cw, base, "api", args.cap, lambda: ingest_run(client, dataset, options))
    summary = out["summary"] or {}
    this_run = summary.get("this_run", {})
    out.update(
        ids=len(ids),
        rows=summary.get("rows"),
        by_status=summary.get("rows_by_status"),
        summary_rate=this_run.get("achieved_rate"),
        summary_blocks=this_run.get("blocks"),
    )
    return out


def cpu_note(r: dict, per: int, what: str) -> str:
    return (
        f"CPU {r['cpu']:.1f} s = {1000 * r['cpu'] / per:.2f} ms/{what} "
        f"(workers {r['cpu_workers']:.1f} + scheduler/client {r['cpu_here']:.1f})"
    )


def budget_line(row: str, what: str, configured: float, r: dict, extra: str = "") -> dict:
    capped = " CAPPED" if r["capped"] else ""
    notes = f"{r['requests']} requests in {r['span']:.1f} s{capped}; run {r['wall']:.1f} s"
    if r.get("summary_rate") is not None:
        notes += f"; summary {r['summary_rate']:.2f}/s (x{r['summary_rate'] / configured:.2f})"
    return {
        "row": row,
        "what": what,
        "configured": configured,
        "value": r["pace"],
        "unit": "/s",
        "ratio": r["pace"] / configured,
        "notes": notes + (f"; {extra}" if extra else ""),
        "raw": {k: v for k, v in r.items() if k != "summary"},
    }


def row_a(args, lines: list[dict], cache: dict) -> None:
    for n in args.ids:
        flags = ("--no-throttle", "--latency", str(args.latency), "--objects", str(n))
        with emulator(args, *flags) as (url, base, _), cluster(args) as cw:
            r = ingest_measured(cw, url, base, listing(url, n), args.rate, args)
        cache[("a", n)] = r
        extra = f"rows {r['rows']} of {n}; {cpu_note(r, max(1, r['requests']), 'request')}"
        what = f"{n:,} ids, {args.latency:g} s latency, no throttle, --rate {args.rate:g}"
        lines.append(budget_line("a", what, args.rate, r, extra))


def row_b(args, lines: list[dict], cache: dict) -> None:
    for n in args.fault_ids:
        flags = ("--no-throttle", "--latency", str(args.latency), "--objects", str(n))
        flags += ("--fault-rate", str(args.fault_rate), "--faults", "all", "--slow-seconds", str(args.timeout))
        with emulator(args, *flags) as (url, base, _), cluster(args) as cw:
            r = ingest_measured(cw, url, base, listing(url, n), args.rate, args)
        accounted = "every id accounted for" if r["rows"] == n else f"ROWS {r['rows']} != ids {n}"
        extra = (
            f"to 95 % of requests: {r['pace95']:.1f}/s (x{r['pace95'] / args.rate:.2f}) in {r['span95']:.1f} s; "
            f"{accounted} {r['by_status']}"
        )
        what = f"{n:,} ids, as a + --fault-rate {args.fault_rate:g} (all kinds), slow = timeout {args.timeout:g} s"
        lines.append(budget_line("b", what, args.rate, r, extra))


def row_c(args, lines: list[dict], cache: dict) -> None:
    flags = ("--latency", str(args.latency), "--objects", str(args.throttle_ids))  # throttle at its defaults
    with emulator(args, *flags) as (url, base, _), cluster(args) as cw:
        r = ingest_measured(cw, url, base, listing(url, args.throttle_ids), args.throttle_rate, args)
    extra = f"blocked {r['blocked']} (summary: {r['summary_blocks']} blocks); rows {r['rows']} of {args.throttle_ids}"
    what = f"{args.throttle_ids} ids, real throttle defaults (40/30 s), {args.latency:g} s latency"
    lines.append(budget_line("c", what, args.throttle_rate, r, extra))


def lookup_loop(url: str, ids: list[int]) -> dict:
    """The blog's loop: one plain ``requests.get(url).json()`` at a time, a new connection each."""
    cpu, start = time.process_time(), time.perf_counter()
    for object_id in ids:
        requests.get(f"{url}/objects/{object_id}", timeout=60).json()
    return {"n": len(ids), "wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def row_d(args, lines: list[dict], cache: dict) -> None:
    n = max(args.fast_ids, args.loop_ids)
    with emulator(args, "--no-throttle", "--objects", str(n)) as (url, base, _):
        ids = listing(url, n)
        loop = lookup_loop(url, ids[: args.loop_ids])
        with cluster(args) as cw:
            ours = ingest_measured(cw, url, base, ids[: args.fast_ids], args.fast_rate, args)
    loop_rate, loop_cpu = loop["n"] / loop["wall"], loop["cpu"] / loop["n"]
    rate, cpu = ours["ids"] / ours["wall"], ours["cpu"] / ours["ids"]
    lines.append(
        {
            "row": "d",
            "what": f"no latency, no throttle: sequential loop, {loop['n']:,} ids (baseline)",
            "value": loop_rate,
            "unit": "lookups/s",
            "ratio": 1.0,
            "notes": f"CPU {1000 * loop_cpu:.2f} ms/lookup (this process)",
            "raw": loop,
        }
    )
    lines.append(
        {
            "row": "d",
            "what": f"no latency, no throttle: metdata, {ours['ids']:,} ids, --rate {args.fast_rate:g}",
            "value": rate,
            "unit": "lookups/s",
            "ratio": rate / loop_rate,
            "notes": f"{cpu_note(ours, ours['ids'], 'lookup')}, x{cpu / loop_cpu:.2f} the loop's"
            + (" CAPPED" if ours["capped"] else ""),
            "raw": {k: v for k, v in ours.items() if k != "summary"},
        }
    )
    flags = ("--no-throttle", "--latency", str(args.latency), "--objects", str(max(1000, args.latency_loop_ids)))
    with emulator(args, *flags) as (url, base, _):
        ids = listing(url, 1000)
        slow_loop = lookup_loop(url, ids[: args.latency_loop_ids])
        ours = cache.get(("a", 1000))
        if ours is None:
            with cluster(args) as cw:
                ours = ingest_measured(cw, url, base, ids, args.rate, args)
    loop_k = 1000 * slow_loop["cpu"] / slow_loop["n"]
    ours_k = 1000 * ours["cpu"] / ours["ids"]
    lines.append(
        {
            "row": "d",
            "what": f"CPU s per 1,000 lookups at {args.latency:g} s latency: metdata (1,000 ids, --rate {args.rate:g})",
            "value": ours_k,
            "unit": "CPU s",
            "ratio": ours_k / loop_k,
            "notes": f"the loop ({slow_loop['n']} ids, {slow_loop['n'] / slow_loop['wall']:.2f}/s): "
            f"{loop_k:.2f} CPU s; "
            f"metdata workers {1000 * ours['cpu_workers'] / ours['ids']:.2f} + scheduler/client "
            f"{1000 * ours['cpu_here'] / ours['ids']:.2f}" + (" CAPPED" if ours["capped"] else ""),
            "raw": {"loop": slow_loop, "metdata_cpu": ours["cpu"], "metdata_ids": ours["ids"]},
        }
    )


def image_options(url: str, store: str, args) -> ImageOptions:
    hosts = frozenset({"images.metmuseum.org", urlsplit(url).netloc})
    return ImageOptions(lookup=LookupOptions(api=url, timeout=args.timeout), store=store, allowed_hosts=hosts)


def images_measured(cw, url: str, base: str, dataset: Dataset, store: str, rate: float, args) -> dict:
    client, _ = cw
    options = image_options(url, store, args)
    planned = images_job.plan(dataset, options)
    out = measured(
        cw, base, "images", args.cap, lambda: images_job.run(client, dataset, options, PaceConfig(rate=rate), planned)
    )
    this_run = (out["summary"] or {}).get("this_run", {})
    out.update(
        selected=planned.selected,
        images=this_run.get("images"),
        by_status=this_run.get("by_status"),
        summary_images_per_s=this_run.get("images_per_s"),
    )
    return out


def row_e(args, lines: list[dict], cache: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="metdata-acquire-images-") as tmp:
        started = time.perf_counter()
        objects = round(args.images / IMAGES_PER_OBJECT)
        drawn = write_replay(Path(tmp) / "replay", objects, 0)
        log.info("replay catalog: %d objects, %d images drawn in %.0f s", objects, drawn, time.perf_counter() - started)
        port = str(free_port())
        served = ("--no-throttle", "--catalog", f"{tmp}/replay", "--port", port)
        dataset = Dataset(f"{tmp}/dataset")
        cores = min(args.workers, os.cpu_count() or 1)
        with cluster(args) as cw:
            client, _ = cw
            with emulator(args, *served) as (url, base, _):
                options = IngestOptions(lookup=LookupOptions(api=url, timeout=args.timeout), pace=PaceConfig(rate=1e4))
                ingest_run(client, dataset, options)
                fast = images_measured(cw, url, base, dataset, "images-fast.zarr", args.fast_rate, args)
                table = pq.read_table(f"{tmp}/dataset/objects", columns=[ImageOptions().url_field])
                urls = [u for u in table.column(0).to_pylist() if u]
                (Path(tmp) / "loop").mkdir()
                loop = images_loop(urls, ImageOptions.size, Path(tmp) / "loop")
            with emulator(args, *served, "--latency", str(args.latency)) as (url, base, _):
                paced = images_measured(cw, url, base, dataset, "images.zarr", args.rate, args)
    loop_rate, loop_cpu = loop["n"] / loop["wall"], loop["cpu"] / loop["n"]
    rate, cpu = fast["requests"] / fast["wall"], fast["cpu"] / max(1, fast["requests"])
    lines.append(
        {
            "row": "e",
            "what": f"images, no latency, no throttle: sequential download + decode loop, {loop['n']:,} (baseline)",
            "value": loop_rate,
            "unit": "images/s per core",
            "ratio": 1.0,
            "notes": f"CPU {1000 * loop_cpu:.1f} ms/image; {loop['ok']} decoded",
            "raw": loop,
        }
    )
    lines.append(
        {
            "row": "e",
            "what": f"images, no latency, no throttle: metdata, {fast['selected']:,} images, --rate {args.fast_rate:g}",
            "value": rate / cores,
            "unit": "images/s per core",
            "ratio": rate / cores / loop_rate,
            "notes": f"{rate:.1f} images/s on {cores} cores; {cpu_note(fast, max(1, fast['requests']), 'image')}, "
            f"x{cpu / loop_cpu:.2f} the loop's; {fast['by_status']}" + (" CAPPED" if fast["capped"] else ""),
            "raw": {k: v for k, v in fast.items() if k != "summary"},
        }
    )
    what = f"images, {paced['selected']:,}, {args.latency:g} s latency, no throttle, --rate {args.rate:g}"
    extra = f"{cpu_note(paced, max(1, paced['requests']), 'image')}; {paced['by_status']}"
    lines.append(budget_line("e", what, args.rate, paced, extra))


ROWS = {"a": row_a, "b": row_b, "c": row_c, "d": row_d, "e": row_e}


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="a,b,c,d,e", help="which rows, comma-separated")
    parser.add_argument("--ids", type=ints, default=[1000, 20000], help="row a's sizes")
    parser.add_argument("--fault-ids", type=ints, default=[1000, 20000], help="row b's sizes")
    parser.add_argument("--rate", type=float, default=80.0, help="requests/s, rows a, b, e")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the emulator adds to every answer")
    parser.add_argument(
        "--timeout", type=float, default=LookupOptions.timeout, help="client timeout = slow faults' hold"
    )
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--throttle-ids", type=int, default=110)
    parser.add_argument("--throttle-rate", type=float, default=1.2)
    parser.add_argument("--fast-ids", type=int, default=5000, help="row d's metdata run")
    parser.add_argument("--fast-rate", type=float, default=5000.0, help="rows d, e: the 'unthrottled' budget")
    parser.add_argument("--loop-ids", type=int, default=1000, help="row d's loop without latency")
    parser.add_argument("--latency-loop-ids", type=int, default=200, help="row d's loop at the latency")
    parser.add_argument("--images", type=int, default=1000, help="row e: about this many images")
    parser.add_argument("--cap", type=float, default=900.0, help="seconds at most per metdata run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--emulator-code", default=str(Path(__file__).resolve().parents[1]), help="source tree")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := set(rows) - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; choose from {','.join(ROWS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)

    lines: list[dict] = []
    cache: dict = {}
    started = time.perf_counter()
    for row in sorted(rows):
        row_started = time.perf_counter()
        ROWS[row](args, lines, cache)
        log.info("row %s done in %.0f s", row, time.perf_counter() - row_started)

    import metdata

    print(
        f"Acquisition at the full budget (issue 13): client code {Path(metdata.__file__).parents[1]}, emulator code "
        f"{args.emulator_code}; {args.workers} workers x {args.threads_per_worker} threads; client timeout "
        f"{args.timeout:g} s; {time.perf_counter() - started:.0f} s in all"
    )
    print(f"  {'row':<3} {'measurement':<92} {'configured':>10} {'achieved':>10} {'ratio':>7}  notes")
    for line in lines:
        configured = f"{line['configured']:g}/s" if "configured" in line else ""
        value = f"{line['value']:.2f}{line['unit'] if line['unit'] == '/s' else ''}"
        print(
            f"  {line['row']:<3} {line['what']:<92} {configured:>10} {value:>10} x{line['ratio']:6.2f}"
            f"  {'' if line['unit'] == '/s' else line['unit'] + '; '}{line['notes']}"
        )
    print(
        "  ratio: achieved / configured where a rate is configured, else against the row's baseline (x1.00).\n"
        "  Achieved = the pace counted at the emulator from the first to the last request of the run."
    )
    if args.json:
        args.json.write_text(json.dumps(lines, indent=1, default=str))


if __name__ == "__main__":
    main()
