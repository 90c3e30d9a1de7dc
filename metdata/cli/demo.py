"""``metdata demo``: the offline end-to-end demo, against the Met emulator started in-process.

Runs the same commands a user would (``metdata ids``, ``metdata ingest``) as subprocesses, with
the emulator's bot protection and a light fault mix on, so the recovery paths show, then
checks a sample of images and prints where everything is. Later stages join the chain as they
are built.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import click
import cv2
import numpy as np
import pyarrow.dataset as pads
import requests

from metdata.dataset import RUNS, Dataset
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.emulator.faults import parse_kinds

log = logging.getLogger(__name__)

#: A light, realistic fault mix: what a long crawl of the real service meets.
DEMO_FAULTS = "503,drop,not-valid,image-404,truncate"


def _run(args: list[str]) -> None:
    """Run one metdata command as a user would; stop the demo if it fails."""
    click.echo(click.style("$ metdata " + " ".join(args), bold=True))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "metdata", *args], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"'metdata {args[0]}' failed with exit code {result.returncode}")
    click.echo(f"  ({time.monotonic() - started:.0f} s)")


def _image_sample(records: list[dict], n: int) -> Counter:
    """Download and decode a few web-large images, as the images stage will."""
    outcomes: Counter[str] = Counter()
    with requests.Session() as session:
        for record in records[:n]:
            try:
                answer = session.get(record["primaryImageSmall"], timeout=10)
            except requests.RequestException:
                outcomes["transient"] += 1
                continue
            if answer.status_code != 200:
                outcomes["not_found" if answer.status_code == 404 else "failed"] += 1
                continue
            pixels = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
            outcomes["ok" if pixels is not None else "bad_image"] += 1
            time.sleep(0.1)
    return outcomes


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-run"),
    show_default=True,
    help="Where the demo writes its outputs.",
)
@click.option(
    "--objects",
    type=click.IntRange(10, 899_999),
    default=1_000,
    show_default=True,
    help="Size of the emulated collection.",
)
@click.option("--data", help="Dataset root (default WORKDIR/data); an s3:// URL works too.")
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 80),
    default=12.0,
    show_default=True,
    help="Requests/s for the whole cluster (the demo emulator's budget is 15/s).",
)
@click.option(
    "--images",
    type=click.IntRange(0, 500),
    default=20,
    show_default=True,
    help="How many images to download and decode as a check.",
)
def demo(workdir: Path, objects: int, data: str | None, rate: float, images: int) -> None:
    """Run the offline demo against a local Met emulator (no internet needed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = data or str(workdir / "data")
    # The real budget (40 requests in 30 s) would make the demo take an hour; this one is the
    # same mechanism scaled so that the demo finishes in minutes: 150 requests in 10 s.
    config = EmulatorConfig(
        objects=objects,
        seed=0,
        throttle_window=10,
        throttle_burst=150,
        throttle_penalty=20,
        fault_rate=0.02,
        faults=parse_kinds(DEMO_FAULTS),
        slow_seconds=3.0,
    )
    with MetEmulator(config) as met:
        click.echo(f"Met emulator: {met.url}  ({objects} objects, bot protection and faults on)")
        common = ["--api", met.url, "--data", root, "--rate", str(rate)]
        _run(["ids", *common])
        _run(["ingest", *common, "--shard-size", "100", "--timeout", "2", "--cooldown", "5"])
        _run(["ingest", *common, "--retry-failed", "--timeout", "5", "--cooldown", "5"])
        dataset = Dataset(root)
        runs = [dataset.fs.cat_file(p) for p in sorted(dataset.fs.ls(dataset.path(RUNS), detail=False))]
        table = pads.dataset(dataset.path("objects"), filesystem=dataset.fs, format="parquet").to_table(
            columns=["objectID", "status", "primaryImageSmall"]
        )
        public = [r for r in table.to_pylist() if r["status"] == "ok" and r["primaryImageSmall"]]
        sample = _image_sample(random.Random(0).sample(public, min(images, len(public))), images)
        counters = requests.get(f"{met.base}/__emulator__/stats", timeout=5).json()
    statuses = Counter(table["status"].to_pylist())
    click.echo("")
    click.echo(click.style("Summary", bold=True))
    click.echo(f"  objects by status:   {dict(sorted(statuses.items()))}  ({table.num_rows} rows)")
    click.echo(f"  images checked:      {dict(sorted(sample.items()))}")
    click.echo(f"  emulator saw:        {json.dumps(counters)}")
    for i, raw in enumerate(runs, 1):
        click.echo(f"  ingest run {i}:        {json.dumps(json.loads(raw)['this_run'])}")
    click.echo(f"  metadata (Parquet):  {dataset.path('objects')}")
