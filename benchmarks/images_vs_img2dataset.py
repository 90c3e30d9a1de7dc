"""metdata's images stage against img2dataset on the same URLs from the emulator (issue 24), in one run.

img2dataset is not a metdata dependency: it runs from its own virtual environment, ``--i2d-venv``
(default ``/tmp/metdata-img2dataset``). If that folder has no ``bin/img2dataset``, the script makes
it (``python3 -m venv`` + ``pip install img2dataset``, from PyPI or your pip configuration) and
says so; pass an existing one to skip the install. Nothing of it is imported here: it runs as a
command, as a user would run it.

Setup: a replay catalog of about ``--images`` web-large images (drawn once; the emulator, in its
own process, then only reads files), metadata ingested with ``metdata ids`` + ``metdata ingest``
(``--rate 0``). The URLs are those ``metdata images`` selects (every public image); img2dataset
gets the same list as a text file.

Each row restarts the emulator on the same port with that row's flags, then runs, from fresh
output folders:

- img2dataset: ``--processes_count`` x ``--thread_count`` (default 2 x 16), ``--image_size``
  150, ``--resize_mode border`` (padding, as metdata's ``--resize pad``), ``--output_format
  files``, ``--timeout`` as metdata's, ``--retries`` 0 (and 4 under the fault mix);
- metdata: ``metdata images --rate 0 --resize pad --workers 2`` (its LocalCluster, as a user runs
  it: in the command's own process since issue 24; ``--metdata-processes`` adds ``--processes``,
  worker processes under nannies, as before).

Both run as commands; the wall time is the command's and the CPU is its whole process tree's
(``getrusage(RUSAGE_CHILDREN)`` around it: every process it started and waited for, which for
metdata with ``--processes`` includes the Dask nannies and workers). CPU per image is over the images each
kept. Rows: no latency; ``--latency`` (0.3 s) on every answer; the fault mix (every kind at
``--fault-rate``, slow answers held ``--slow-seconds``): images each recovered. Last, bytes on
disk per kept image: img2dataset's output folder (JPEGs re-encoded at quality 95, plus their
JSON and the shard Parquet) and metdata's store (the ``images`` chunks plus the status shards).

Both commands pay a start-up (Python imports; metdata's LocalCluster of a scheduler, nannies and
workers) that a longer run spreads thinner. So in the first row both also run on the first
``--small`` URLs (by objectID; metdata with ``--where "objectID <= X"``), and the marginal CPU
per image, (CPU of all - CPU of the small run) / (images of all - of the small run), is printed
beside: the per-image cost without the start-up.

    python benchmarks/images_vs_img2dataset.py [--images 4325] [--rows plain,latency,faults] \\
        [--i2d-venv /tmp/metdata-img2dataset]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads
from images_faults import FAULTS
from images_pipeline import write_replay
from measure import fake_met, free_port

log = logging.getLogger("images_vs_img2dataset")
IMAGES_PER_OBJECT = 0.27  # share of the synthetic catalog's objects with a public image
METDATA = [sys.executable, "-m", "metdata"]


def img2dataset_command(venv: Path) -> Path:
    """The img2dataset command of ``venv``, installing it there first if it is missing."""
    command = venv / "bin" / "img2dataset"
    if command.exists():
        return command
    log.info("no img2dataset in %s: making that venv and installing img2dataset (not a metdata dependency)", venv)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return command


def timed(command: list[str], **kwargs) -> dict:
    """Run a command; its wall time and the CPU of its whole process tree (the reaped children)."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "stdout": done.stdout}


def folder_bytes(folder: Path, suffixes: tuple[str, ...] | None = None) -> int:
    return sum(
        f.stat().st_size for f in folder.rglob("*") if f.is_file() and (suffixes is None or f.suffix in suffixes)
    )


def run_img2dataset(command: Path, urls_file: Path, out: Path, retries: int, args) -> dict:
    r = timed(
        [
            str(command),
            f"--url_list={urls_file}",
            "--input_format=txt",
            f"--output_folder={out}",
            "--output_format=files",
            f"--processes_count={args.processes}",
            f"--thread_count={args.threads}",
            f"--image_size={args.size}",
            "--resize_mode=border",
            f"--timeout={args.timeout:g}",
            f"--retries={retries}",
            "--enable_wandb=False",
            "--distributor=multiprocessing",
        ],
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
    )
    r["kept"] = sum(1 for _ in out.rglob("*.jpg"))
    r["bytes"] = folder_bytes(out)
    r["jpeg_bytes"] = folder_bytes(out, (".jpg",))
    return r


def run_metdata(api: str, root: Path, store: str, args, where: str | None = None) -> dict:
    flags = ["--data", str(root), "--api", api, "--store", store, "--size", str(args.size), "--resize", "pad"]
    flags += ["--where", where] if where else []
    flags += ["--rate", "0", "--workers", str(args.workers), "--timeout", f"{args.timeout:g}"]
    flags += ["--processes"] if getattr(args, "metdata_processes", False) else []
    r = timed([*METDATA, "images", *flags])
    summary = json.loads(r["stdout"])
    r["kept"] = summary["slots_by_status"].get("ok", 0)
    r["by_status"] = summary["slots_by_status"]
    r["run_s"] = summary["this_run"]["duration_s"]
    r["bytes"] = folder_bytes(root / store) + folder_bytes(root / store.removesuffix(".zarr"))
    r["chunk_bytes"] = folder_bytes(root / store / "images", None) if (root / store / "images").exists() else 0
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="about this many images")
    parser.add_argument("--rows", default="plain,latency,faults")
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="both clients' request timeout")
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--processes", type=int, default=2, help="img2dataset --processes_count")
    parser.add_argument("--threads", type=int, default=16, help="img2dataset --thread_count")
    parser.add_argument("--workers", type=int, default=2, help="metdata images --workers")
    parser.add_argument(
        "--metdata-processes", action="store_true", help="metdata images --processes (worker processes, nannies)"
    )
    parser.add_argument("--i2d-venv", type=Path, default=Path("/tmp/metdata-img2dataset"))
    parser.add_argument("--small", type=int, default=128, help="URLs of the start-up run (0: none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    command = img2dataset_command(args.i2d_venv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    results: list[tuple[str, str, dict]] = []
    startup: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="metdata-vs-i2d-") as tmp:
        tmp = Path(tmp)
        drawn = write_replay(tmp / "replay", round(args.images / IMAGES_PER_OBJECT), 0)
        served = ("--no-throttle", "--catalog", str(tmp / "replay"), "--port", str(free_port()))
        root = tmp / "dataset"
        with fake_met(*served) as (api, _):
            subprocess.run([*METDATA, "ids", "--data", str(root), "--api", api, "--rate", "0"], check=True)
            ingest = [*METDATA, "ingest", "--data", str(root), "--api", api, "--rate", "0", "--workers", "2"]
            subprocess.run(ingest, check=True, capture_output=True)
        table = pads.dataset(root / "objects", format="parquet").to_table(
            columns=["objectID", "primaryImageSmall", "isPublicDomain", "status"]
        )
        chosen = sorted(
            (i, u)
            for i, u, public, status in zip(*(table[c].to_pylist() for c in table.column_names), strict=True)
            if u and public and status == "ok"
        )
        urls = [u for _, u in chosen]
        urls_file = tmp / "urls.txt"
        urls_file.write_text("\n".join(urls) + "\n")
        small_file = tmp / "small.txt"
        small_file.write_text("\n".join(urls[: args.small]) + "\n")
        small_where = f"objectID <= {chosen[args.small - 1][0]}" if args.small else None
        log.info("%d URLs (%d images drawn)", len(urls), drawn)
        scenarios = {
            "plain": ("no latency", (), [0]),
            "latency": (f"{args.latency:g} s latency", ("--latency", str(args.latency)), [0]),
            "faults": (
                f"fault mix ({args.fault_rate:g} each, slow {args.slow_seconds:g} s)",
                ("--faults", FAULTS, "--fault-rate", str(args.fault_rate), "--slow-seconds", str(args.slow_seconds)),
                [0, 4],
            ),
        }
        for row in rows:
            label, flags, retries = scenarios[row]
            with fake_met(*served, *flags) as (api, _):
                if row == rows[0] and args.small:  # the start-up runs
                    out = tmp / "i2d-small"
                    startup["img2dataset"] = run_img2dataset(command, small_file, out, 0, args)
                    shutil.rmtree(out)
                    startup["metdata"] = run_metdata(api, root, "images-small.zarr", args, small_where)
                for n in retries:
                    out = tmp / f"i2d-{row}-{n}"
                    got = run_img2dataset(command, urls_file, out, n, args)
                    results.append((label, f"img2dataset --retries {n}", got))
                    shutil.rmtree(out)
                store = f"images-{row}.zarr"
                results.append((label, "metdata images --rate 0", run_metdata(api, root, store, args)))
    n = len(urls)
    print(
        f"metdata vs img2dataset: the same {n} web-large URLs from the emulator (replay catalog, own process), "
        f"{args.size} px; img2dataset {args.processes} processes x {args.threads} threads, files output, "
        f"timeout {args.timeout:g} s; metdata images --rate 0 on {args.workers} workers"
    )
    print(
        f"  {'row':<34} {'run':<28} {'wall s':>7} {'kept':>6} {'kept %':>6} {'images/s':>8} {'CPU s':>7}"
        f" {'CPU ms/img':>10} {'x i2d':>6} {'bytes/img':>9}"
    )
    base: dict[str, dict] = {}
    for label, who, r in results:
        per = 1000 * r["cpu"] / max(1, r["kept"])
        if who.startswith("img2dataset") and label not in base:
            base[label] = {**r, "per": per}
        ref = base.get(label)
        print(
            f"  {label:<34} {who:<28} {r['wall']:7.1f} {r['kept']:6d} {100 * r['kept'] / n:5.1f}%"
            f" {r['kept'] / r['wall']:8.1f} {r['cpu']:7.1f} {per:10.2f} x{per / ref['per'] if ref else 1:5.2f}"
            f" {r['bytes'] / max(1, r['kept']):9,.0f}"
        )
    if startup:
        first = results[0][0]
        marginal = {}
        for who, small in startup.items():
            full = next(r for label, name, r in results if label == first and name.startswith(who))
            marginal[who] = 1000 * (full["cpu"] - small["cpu"]) / max(1, full["kept"] - small["kept"])
            print(
                f"  {first}, start-up: {who} on {small['kept']} images: {small['wall']:.1f} s, "
                f"CPU {small['cpu']:.1f} s; marginal CPU per image over the rest: {marginal[who]:.2f} ms"
            )
        print(f"  marginal CPU per image, metdata / img2dataset: x{marginal['metdata'] / marginal['img2dataset']:.2f}")
    for label, who, r in results:
        if who.startswith("metdata"):
            print(f"  {label}: metdata's statuses {r['by_status']}; its run alone (summary) {r['run_s']:.1f} s")
    print(
        "  wall and CPU: the whole command (metdata's includes starting its LocalCluster); CPU of the process tree;"
        " 'x i2d' = CPU per kept image / img2dataset's (--retries 0) in the same row; bytes/img: the output on disk"
        " per kept image (img2dataset: JPEG q95 + JSON + Parquet; metdata: the Zarr store + status shards)"
    )


if __name__ == "__main__":
    main()
