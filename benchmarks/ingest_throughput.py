"""How fast ingestion looks ids up when nothing holds it back, and what each lookup costs.

The emulator runs in its own process (``metdata fake-met --no-throttle``, no latency), so its
CPU counts against neither side. Baseline: the blog's approach, a sequential
``requests.get(url).json()`` loop (a new connection per request) over ``--baseline-ids`` ids.
Then ``metdata.jobs.ingest.run`` on a LocalCluster over all the ids, once at each ``--rates`` (80/s, the
documented ceiling, and a rate high enough to show the pipeline's own ceiling), each into a
fresh temporary dataset whose listing is snapshotted beforehand (so the run only looks up).

Prints lookups/s and its ratio to the baseline, and CPU seconds per 1,000 lookups: for the
baseline, this process; for metdata, the worker processes (``getrusage`` before and after, via
``client.run``) and, separately, this process, which hosts the Dask scheduler (one pacer RPC per
request) and the client.

    python benchmarks/ingest_throughput.py [--objects 5000] [--baseline-ids 1000] \\
        [--rates 80 1000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import requests
from measure import cpu_seconds, fake_met, process_cpu

from metdata.acquire import listing
from metdata.acquire.lookup import LookupOptions
from metdata.cluster import connect
from metdata.jobs.ingest import IngestOptions, run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset


def baseline(url: str, ids: list[int]) -> dict:
    """The blog's loop: one plain ``requests.get`` at a time, a new connection each."""
    cpu, start = time.process_time(), time.perf_counter()
    for object_id in ids:
        requests.get(f"{url}/objects/{object_id}", timeout=30).json()
    wall = time.perf_counter() - start
    return {"n": len(ids), "wall": wall, "cpu": time.process_time() - cpu, "client_cpu": None}


def metdata_run(client, url: str, ids: list[int], rate: float, args, root: str) -> dict:
    dataset = Dataset(root)
    listing.write_listing(dataset, ids, {})
    options = IngestOptions(
        lookup=LookupOptions(api=url, max_in_flight=args.max_in_flight),
        pace=PaceConfig(rate=rate),
        shard_size=args.shard_size,
    )
    before, here = client.run(cpu_seconds), time.process_time()
    start = time.perf_counter()
    summary = run(client, dataset, options)
    wall = time.perf_counter() - start
    here, after = time.process_time() - here, client.run(cpu_seconds)
    done = summary["this_run"]["ids_looked_up"]
    if done != len(ids) or summary["this_run"]["by_status"].get("ok") != len(ids):
        logging.warning("rate %g: not every id came back ok: %s", rate, summary["this_run"])
    return {
        "n": done,
        "wall": wall,
        "cpu": sum(after[w] - before[w] for w in after),
        "client_cpu": here,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=5000, help="ids the metdata runs look up")
    parser.add_argument("--baseline-ids", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="+", default=[80.0, 1000.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument(
        "--max-in-flight", type=int, default=0, help="requests in flight per task (0: sized to the rate)"
    )
    # 250, not the default 1,000: 5,000 ids in 1,000-id shards are 5 tasks on 4 task slots,
    # and the fifth would run alone at the end, hiding the pipeline's ceiling.
    parser.add_argument("--shard-size", type=int, default=250)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    rows = []
    with fake_met("--no-throttle", "--mix", "dense", "--objects", str(args.objects)) as (url, met):
        ids = sorted(requests.get(f"{url}/objects", timeout=60).json()["objectIDs"])
        met_cpu = process_cpu(met)
        result = baseline(url, ids[: args.baseline_ids])
        result["met_cpu"], met_cpu = process_cpu(met) - met_cpu, process_cpu(met)
        rows.append(("baseline: sequential requests.get, new connection each", result))
        with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as client:
            for rate in args.rates:
                with tempfile.TemporaryDirectory(prefix="metdata-throughput-") as tmp:
                    met_cpu = process_cpu(met)
                    result = metdata_run(client, url, ids, rate, args, f"{tmp}/dataset")
                    result["met_cpu"] = process_cpu(met) - met_cpu
                rows.append((f"metdata, metdata.jobs.ingest.run --rate {rate:g}", result))

    print(
        f"Ingestion throughput, unthrottled emulator in its own process ({args.objects} objects); "
        f"metdata on {args.workers} workers x {args.threads_per_worker} threads x "
        f"max {args.max_in_flight or 'auto'} in flight, shards of {args.shard_size}"
    )
    print(
        f"  {'run':<55} {'lookups':>7} {'lookups/s':>9} {'x base':>7}"
        f" {'CPU s/1000':>10} {'x base':>7} {'+this proc':>10} {'emulator':>8}"
    )
    base = rows[0][1]
    base_rate, base_cpu = base["n"] / base["wall"], 1000 * base["cpu"] / base["n"]
    for name, r in rows:
        rate, cpu = r["n"] / r["wall"], 1000 * r["cpu"] / r["n"]
        extra = "" if r["client_cpu"] is None else f"{1000 * r['client_cpu'] / r['n']:.2f}"
        print(
            f"  {name:<55} {r['n']:7d} {rate:9.1f} x{rate / base_rate:6.2f}"
            f" {cpu:10.2f} x{cpu / base_cpu:6.2f} {extra:>10} {1000 * r['met_cpu'] / r['n']:8.2f}"
        )
    print(
        "  CPU s/1000 lookups: baseline = this process; metdata = the worker processes summed."
        "\n  '+this proc' = the scheduler (one pacer RPC per request) and the client, in this"
        " process; 'emulator' = the fake-met process, for reference (not counted in either)."
    )


if __name__ == "__main__":
    main()
