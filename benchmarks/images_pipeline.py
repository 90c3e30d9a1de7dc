"""End to end: selected objects' images to a 150 x 150 array, metdata against the blog's loop.

The emulator runs in its own process (``metdata fake-met --no-throttle``), so its CPU counts
against neither side. By default it serves a replay catalog written beforehand from the
synthetic one (``--objects`` records and their web-large JPEGs, drawn once in this process):
every image is then a file read, as on the real image host, so neither side pays for drawing
(``--emulator synthetic`` serves the synthetic catalog directly: each image is drawn on its
first request, which the metdata run makes, then read from the emulator's disk cache).

1. Metadata: ``metdata.jobs.ingest.run`` (``--rate``) into a temporary dataset root.
2. metdata: ``metdata.jobs.images.plan`` + ``metdata.jobs.images.run`` (``--rate``, every public image) on a
   LocalCluster of ``--workers`` workers.
3. Baseline, the blog's way, over the same URLs: a sequential loop of ``requests.get(url)
   .content`` (a new connection each), written to a file, ``cv2.imread``, ``cv2.resize`` to
   the size, appended to a list, ``np.stack`` at the end.

Prints images/s for both and the ratio; CPU ms per image: for the baseline, this process; for
metdata, the worker processes (``getrusage`` before and after, via ``client.run``) and,
separately, this process (the Dask scheduler, which answers one pacer RPC per download, and the
client); the emulator's, for reference; the bytes per valid image in the Zarr store (the
``images`` chunk files) against the raw size x size x 3 bytes, and the bytes downloaded per
image. ``--latency`` adds seconds to every emulator answer, as a distant server would.

Then the workers' peak memory for a small selection (``--where "objectID <= X"``, the first
``--small-share`` of the images) and for all of them, each on a fresh LocalCluster into its own
store: RSS sampled every ``--every`` s (psutil, by pid) and each worker's own high-water mark
(``VmHWM`` from ``/proc/self/status``, via ``client.run``; not ``ru_maxrss``, which for a
spawned worker also counts the parent's RSS at the fork before ``exec``). The small run is the
baseline (expected ratio ~1.0: a worker holds a chunk at a time, whatever the selection).

    python benchmarks/images_pipeline.py [--objects 3000] [--rate 1000] [--workers 2] \\
        [--emulator replay|synthetic] [--latency 0] [--small-share 0.25]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # before distributed is imported

import cv2
import numpy as np
import psutil
import requests
import zarr
from measure import RssSampler, cpu_seconds, fake_met, peak_rss_bytes, process_cpu

from metdata.acquire.lookup import LookupOptions
from metdata.cluster import connect
from metdata.emulator.catalog import Synthetic
from metdata.images.images import ImageOptions
from metdata.jobs import images as images_job
from metdata.jobs.ingest import IngestOptions
from metdata.jobs.ingest import run as ingest
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset

MB = 1024 * 1024


def write_replay(folder: Path, objects: int, seed: int) -> int:
    """Write the synthetic catalog's records and web-large images as a replay catalog."""
    catalog = Synthetic(objects, seed, "dense")
    (folder / "objects").mkdir(parents=True)
    images = 0
    for object_id in catalog.ids.tolist():
        (folder / "objects" / f"{object_id}.json").write_bytes(catalog.record_bytes(object_id))
        url = catalog.record(object_id)["primaryImageSmall"]
        if url:
            path = urlsplit(url).path
            file = folder / "images" / path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(catalog.image(path).body)
            images += 1
    return images


def image_options(url: str, args, store: str = "images.zarr") -> ImageOptions:
    return ImageOptions(
        lookup=LookupOptions(api=url),
        size=args.size,
        chunk=args.chunk,
        store=store,
        allowed_hosts=frozenset({"images.metmuseum.org", urlsplit(url).netloc}),
    )


def baseline(urls: list[str], size: int, folder: Path) -> dict:
    """The blog's loop: download, write a file, read it back with OpenCV, resize, stack."""
    pixels = []
    cpu, start = time.process_time(), time.perf_counter()
    for i, url in enumerate(urls):
        data = requests.get(url, timeout=30).content
        path = folder / f"{i:06d}.jpg"
        path.write_bytes(data)
        img = cv2.imread(str(path))
        if img is None:
            continue
        pixels.append(cv2.resize(img, (size, size)))
    array = np.stack(pixels)
    wall = time.perf_counter() - start
    return {"n": len(urls), "ok": len(array), "wall": wall, "cpu": time.process_time() - cpu, "client_cpu": None}


def metdata_run(client, url: str, dataset: Dataset, args) -> tuple[dict, images_job.Plan]:
    """``metdata.jobs.images.plan`` + ``run`` over every public image; wall time and CPU per side."""
    options = image_options(url, args)
    before, here, start = client.run(cpu_seconds), time.process_time(), time.perf_counter()
    planned = images_job.plan(dataset, options)
    summary = images_job.run(client, dataset, options, PaceConfig(rate=args.rate), planned)
    wall = time.perf_counter() - start
    here, after = time.process_time() - here, client.run(cpu_seconds)
    this_run = summary["this_run"]
    return {
        "n": this_run["images"],
        "ok": this_run["by_status"].get("ok", 0),
        "wall": wall,
        "task_rate": this_run["images_per_s"],
        "bytes": this_run["bytes_downloaded"],
        "cpu": sum(after[w] - before[w] for w in after),
        "client_cpu": here,
    }, planned


def store_bytes(root: Path, store: str) -> int:
    """Bytes of the ``images`` array's chunk files (not its metadata)."""
    return sum(f.stat().st_size for f in (root / store / "images").rglob("*") if f.is_file() and f.name != "zarr.json")


def memory_run(url: str, args, root: str, store: str, where: str | None) -> dict:
    """One images run on a fresh cluster; the workers' memory along the way."""
    with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as client:
        dataset = Dataset(root)
        options = image_options(url, args, store)
        planned = images_job.plan(dataset, options, where=where)
        pids = client.run(os.getpid)
        start_rss = {w: psutil.Process(p).memory_info().rss for w, p in pids.items()}
        with RssSampler(pids, args.every) as sampler:
            summary = images_job.run(client, dataset, options, PaceConfig(rate=args.rate), planned)
        high_water = client.run(peak_rss_bytes)
    return {
        "selected": planned.selected,
        "ok": summary["this_run"]["by_status"].get("ok", 0),
        "rate": summary["this_run"]["images_per_s"],
        "start": max(start_rss.values()),
        "peak": max(sampler.peak.values()),
        "high_water": max(high_water.values()),
        "samples": sampler.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=3000, help="objects in the emulator's catalog")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--emulator", choices=["replay", "synthetic"], default="replay")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the emulator adds to every answer")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s per host (the ceiling)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--chunk", type=int, default=ImageOptions.chunk)
    parser.add_argument("--small-share", type=float, default=0.25, help="the small memory run's share of images")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between RSS samples")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    rows = []
    with tempfile.TemporaryDirectory(prefix="metdata-pipeline-") as tmp:
        flags = ["--no-throttle", "--objects", str(args.objects), "--seed", str(args.seed), "--mix", "dense"]
        flags += ["--latency", str(args.latency)]
        if args.emulator == "replay":
            started = time.perf_counter()
            drawn = write_replay(Path(tmp) / "replay", args.objects, args.seed)
            logging.info("replay catalog: %d images drawn in %.1f s", drawn, time.perf_counter() - started)
            flags += ["--catalog", f"{tmp}/replay"]
        root = Path(tmp) / "dataset"
        with fake_met(*flags) as (url, met):
            dataset = Dataset(str(root))
            with connect("local", workers=args.workers, threads_per_worker=args.threads_per_worker) as client:
                started = time.perf_counter()
                lookup = LookupOptions(api=url)
                ingested = ingest(client, dataset, IngestOptions(lookup=lookup, pace=PaceConfig(rate=args.rate)))
                logging.info("ingested %s in %.1f s", ingested["this_run"]["by_status"], time.perf_counter() - started)
                met_cpu = process_cpu(met)
                ours, planned = metdata_run(client, url, dataset, args)
                ours["met_cpu"] = process_cpu(met) - met_cpu
            urls = [u for task in planned.tasks for u in task.urls if u]
            group = zarr.open_group(str(root / ImageOptions.store), mode="r")
            valid = int(np.count_nonzero(group["valid"][:]))
            zarr_bytes = store_bytes(root, ImageOptions.store)

            met_cpu = process_cpu(met)
            (Path(tmp) / "blog").mkdir()
            base = baseline(urls, args.size, Path(tmp) / "blog")
            base["met_cpu"] = process_cpu(met) - met_cpu
            rows.append(("baseline: sequential requests.get, file, cv2.imread + resize", base))
            rows.append(("metdata: metdata.jobs.images.plan + run", ours))

            ids = group["object_id"][:]
            cut = int(ids[max(1, round(len(ids) * args.small_share)) - 1])
            memory = {
                f"objectID <= {cut}": memory_run(url, args, str(root), "images-small.zarr", f"objectID <= {cut}"),
                "all": memory_run(url, args, str(root), "images-large.zarr", None),
            }

    print(
        f"Images end to end: {args.emulator} emulator in its own process ({args.objects} objects, "
        f"{len(urls)} public web-large images, latency {args.latency:g} s), {args.size} x {args.size}; "
        f"metdata on {args.workers} workers x {args.threads_per_worker} threads, chunks of {args.chunk}, "
        f"--rate {args.rate:g}"
    )
    print(
        f"  {'run':<62} {'images':>6} {'ok':>5} {'images/s':>8} {'x base':>7}"
        f" {'CPU ms/image':>12} {'x base':>7} {'+this proc':>10} {'emulator':>8}"
    )
    base_rate, base_cpu = base["n"] / base["wall"], 1000 * base["cpu"] / base["n"]
    for name, r in rows:
        rate, cpu = r["n"] / r["wall"], 1000 * r["cpu"] / r["n"]
        extra = "" if r["client_cpu"] is None else f"{1000 * r['client_cpu'] / r['n']:.2f}"
        print(
            f"  {name:<62} {r['n']:6d} {r['ok']:5d} {rate:8.1f} x{rate / base_rate:6.2f}"
            f" {cpu:12.2f} x{cpu / base_cpu:6.2f} {extra:>10} {1000 * r['met_cpu'] / r['n']:8.2f}"
        )
    print(
        "  metdata's images/s is over plan + run (store creation included); its summary's own figure "
        f"(run only): {ours['task_rate']:.1f}.\n  CPU ms/image: baseline = this process; metdata = the "
        "worker processes; '+this proc' = the scheduler (one pacer RPC\n  per download) and the client; "
        "'emulator' = the fake-met process, for reference (counted in neither)."
    )
    raw = args.size * args.size * 3
    per_image = zarr_bytes / valid
    print(
        f"  Zarr store: {per_image:,.0f} bytes per valid image in images.zarr/images ({valid} valid), "
        f"x{per_image / raw:.2f} of raw {raw:,} bytes; downloaded {ours['bytes'] / ours['ok']:,.0f} bytes per image"
    )
    print(
        f"  Worker memory, each selection on a fresh cluster, RSS sampled every {args.every:g} s:\n"
        f"  {'selection':<24} {'images':>6} {'ok':>5} {'images/s':>8} {'RSS at start':>12}"
        f" {'peak RSS':>8} {'x small':>7} {'VmHWM':>6} {'x small':>7}"
    )
    small = next(iter(memory.values()))
    for name, r in memory.items():
        print(
            f"  {name:<24} {r['selected']:6d} {r['ok']:5d} {r['rate']:8.1f} {r['start'] / MB:9.0f} MB"
            f" {r['peak'] / MB:5.0f} MB x{r['peak'] / small['peak']:6.2f}"
            f" {r['high_water'] / MB:3.0f} MB x{r['high_water'] / small['high_water']:6.2f}"
        )
    print("  peak RSS: the largest sample over the workers; VmHWM: the largest worker's own high-water mark")


if __name__ == "__main__":
    main()
