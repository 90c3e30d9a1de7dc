"""``metdata demo``: the offline end-to-end demo, against the Met emulator started in-process.

Runs the same commands a user would (``metdata ids``, ``metdata ingest``) as subprocesses, with
the emulator's bot protection and a light fault mix on, so the recovery paths show, then
builds the images store and the exploration report, and prints where everything is. Later stages join the chain as they
are built.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import click
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
def demo(workdir: Path, objects: int, data: str | None, rate: float) -> None:
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
        _run(["images", "--data", root, "--api", met.url, "--rate", str(rate), "--timeout", "5", "--cooldown", "5"])
        _run(["explore", "--data", root, "--out", str(workdir / "report")])
        dataset = Dataset(root)
        counters = requests.get(f"{met.base}/__emulator__/stats", timeout=5).json()
    runs = [dataset.read_json(name) for name in dataset.data_files(RUNS, suffix=".json")]
    table = pads.dataset(dataset.path("objects"), filesystem=dataset.fs, format="parquet").to_table(
        columns=["objectID", "status"]
    )
    statuses = Counter(table["status"].to_pylist())
    images = dataset.read_json("images/_summary.json")
    click.echo("")
    click.echo(click.style("Summary", bold=True))
    click.echo(f"  objects by status:   {dict(sorted(statuses.items()))}  ({table.num_rows} rows)")
    click.echo(f"  images by status:    {images['slots_by_status']}  ({images['selected']} selected)")
    click.echo(f"  emulator saw:        {json.dumps(counters)}")
    for i, run in enumerate(runs, 1):
        click.echo(f"  ingest run {i}:        {json.dumps(run['this_run'])}")
    click.echo(f"  images run:          {json.dumps(images['this_run'])}")
    click.echo(f"  metadata (Parquet):  {dataset.path('objects')}")
    click.echo(f"  images (Zarr):       {images['store']}")
    click.echo(f"  report (HTML):       {workdir / 'report' / 'report.html'}")
