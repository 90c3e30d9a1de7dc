"""Scale-out of the images stage (issue 24): ``metdata images --rate 0`` on 1 vs 2 worker processes.

The workers are processes (``metdata images --processes``): what scales across cores and machines.
``--in-process`` measures the default local flavour instead (workers as threads of the command's
process: cheaper to start, bound by one interpreter's GIL for its Python part).

A replay catalog of about ``--images`` web-large images (the emulator in its own process only
reads files), metadata ingested once (``metdata ids`` + ``metdata ingest --rate 0``); then, for
each ``--latency`` (default 0 and 0.3 s), ``metdata images --rate 0 --workers W`` for W in
``--workers`` (default 1, 2) into fresh stores, each a command as a user runs it: wall time,
images/s (over the summary's own run time, without the cluster's start), CPU of the whole
process tree per image, and the ratio to 1 worker. The emulator's CPU is reported beside (it
shares the machine's cores: on a 2-core machine it competes with the workers).

    python benchmarks/images_scale.py [--images 2000] [--workers 1,2] [--latency 0,0.3]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import tempfile
from pathlib import Path

from images_pipeline import write_replay
from images_vs_img2dataset import IMAGES_PER_OBJECT, METDATA, run_metdata
from measure import fake_met, free_port, process_cpu

log = logging.getLogger("images_scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--latency", default="0,0.3")
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--in-process", action="store_true", help="workers as threads (the default flavour)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    rows = []
    with tempfile.TemporaryDirectory(prefix="metdata-scale-") as tmp:
        tmp = Path(tmp)
        write_replay(tmp / "replay", round(args.images / IMAGES_PER_OBJECT), 0)
        served = ("--no-throttle", "--catalog", str(tmp / "replay"), "--port", str(free_port()))
        root = tmp / "dataset"
        with fake_met(*served) as (api, _):
            subprocess.run([*METDATA, "ids", "--data", str(root), "--api", api, "--rate", "0"], check=True)
            ingest = [*METDATA, "ingest", "--data", str(root), "--api", api, "--rate", "0", "--workers", "2"]
            subprocess.run(ingest, check=True, capture_output=True)
        for latency in (float(x) for x in args.latency.split(",")):
            with fake_met(*served, "--latency", str(latency)) as (api, met):
                for workers in (int(x) for x in args.workers.split(",")):
                    run = argparse.Namespace(
                        size=args.size, workers=workers, timeout=args.timeout, metdata_processes=not args.in_process
                    )
                    emulator = process_cpu(met)
                    r = run_metdata(api, root, f"images-{latency:g}-{workers}.zarr", run)
                    r["emulator_cpu"] = process_cpu(met) - emulator
                    rows.append((latency, workers, r))
    print("metdata images --rate 0, 1 vs more worker processes (this machine: its cores shared with the emulator)")
    print(
        f"  {'latency':>7} {'workers':>7} {'images':>6} {'wall s':>7} {'run s':>6} {'images/s':>8} {'x 1 worker':>10}"
        f" {'CPU ms/img':>10} {'emulator ms/img':>15}"
    )
    first: dict[float, float] = {}
    for latency, workers, r in rows:
        rate = r["kept"] / r["run_s"]
        first.setdefault(latency, rate)
        print(
            f"  {latency:7.2f} {workers:7d} {r['kept']:6d} {r['wall']:7.1f} {r['run_s']:6.1f} {rate:8.1f}"
            f" x{rate / first[latency]:9.2f} {1000 * r['cpu'] / r['kept']:10.2f}"
            f" {1000 * r['emulator_cpu'] / r['kept']:15.2f}"
        )


if __name__ == "__main__":
    main()
