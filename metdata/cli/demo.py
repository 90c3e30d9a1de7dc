"""``metdata demo``: the offline end-to-end demo, against the Met emulator started in-process.

Runs the same commands a user would, as subprocesses, with the emulator's bot protection and a
light fault mix on so that the recovery paths show::

    ids --target → ingest → ingest --retry-failed → images → images --retry-failed → explore
        → train → evaluate → predict (one held-out painting, downloaded by its URL)

It follows the path ``metdata plan`` recommends for a target: the target's candidates through the
search (``ids --target``), so that ``ingest`` looks up those and not the whole collection.

then prints where everything is and what came out.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click
import pyarrow.dataset as pads
import requests

from metdata.acquire.listing import read_listing_meta
from metdata.cli.options import FiniteFloat
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.emulator.faults import KINDS, parse_kinds
from metdata.storage import layout
from metdata.storage.dataset import Dataset
from metdata.storage.layout import RUNS

#: A light, realistic fault mix: what a long crawl of the real service meets.
DEMO_FAULTS = "503,drop,not-valid,image-404,truncate"
#: The target the demo trains: the blog's four painting cultures.
TARGET = "painting-culture"


def emulator_config(objects: int, faults: str = DEMO_FAULTS, fault_rate: float = 0.02) -> EmulatorConfig:
    """The demo's emulator: the synthetic catalog (seed 0) and the bot protection scaled to 30/s.

    The real budget (40 requests in 30 s) would make the demo take hours; this one is the same
    mechanism scaled so that the demo finishes in minutes: 300 requests in 10 s.
    """
    return EmulatorConfig(
        objects=objects,
        seed=0,
        mix="dense",  # enough paintings for a model from a few thousand objects
        throttle_window=10,
        throttle_burst=300,
        throttle_penalty=20,
        fault_rate=fault_rate,
        faults=parse_kinds(faults) if faults else frozenset(),
        slow_seconds=3.0,
    )


@dataclass(frozen=True)
class Pipeline:
    """The demo's commands for one API and dataset root (also what the end-to-end tests run).

    Attributes:
        api: the Collection API base URL.
        root: the dataset root (local folder or s3:// URL).
        workdir: where the report goes.
        rate: requests/s for the whole cluster.
        size: the images' side in pixels.
        epochs: training epochs.
        cluster: the ``--cluster`` of the Dask stages.
        chunk: images per Zarr chunk (and per task).
        search: take the target's candidates through the search (``ids --target``, the recommended
            path); False takes the whole listing (``ids``: the full crawl).
    """

    api: str
    root: str
    workdir: Path
    rate: float = 25.0
    size: int = 150
    epochs: int = 15
    cluster: str = "local"
    chunk: int = 64
    search: bool = True

    @property
    def run_url(self) -> str:
        """The run folder: ``ROOT/runs/<target>``."""
        return layout.run_folder(self.root, TARGET)

    def common(self) -> list[str]:
        """The options every Dask stage takes."""
        return ["--api", self.api, "--data", self.root, "--rate", str(self.rate), "--cluster", self.cluster]

    def ids(self) -> list[str]:
        """``metdata ids --target`` (the target's candidates), or ``metdata ids`` (every id)."""
        target = ["--target", TARGET] if self.search else []
        return ["ids", "--api", self.api, "--data", self.root, "--rate", str(self.rate), *target]

    def ingest(self, *extra: str) -> list[str]:
        """``metdata ingest`` (with ``extra`` flags, e.g. ``--retry-failed``)."""
        return ["ingest", *self.common(), "--shard-size", "100", "--timeout", "2", "--cooldown", "5", *extra]

    def images(self, *extra: str) -> list[str]:
        """``metdata images`` of the target's paintings (with ``extra`` flags)."""
        return [
            "images",
            *self.common(),
            "--target",
            TARGET,
            "--size",
            str(self.size),
            "--chunk",
            str(self.chunk),
            "--timeout",
            "5",
            "--cooldown",
            "5",
            *extra,
        ]

    def acquire(self) -> list[list[str]]:
        """ids → ingest → retry → images → retry: the dataset."""
        return [
            self.ids(),
            self.ingest(),
            self.ingest("--retry-failed"),
            self.images(),
            self.images("--retry-failed"),
        ]

    def explore(self) -> list[str]:
        """``metdata explore`` into WORKDIR/report."""
        return ["explore", "--data", self.root, "--out", str(self.workdir / "report")]

    def train(self) -> list[str]:
        """``metdata train`` of the target into :attr:`run_url`."""
        return ["train", "--data", self.root, "--target", TARGET, "--out", self.run_url, "--epochs", str(self.epochs)]

    def evaluate(self) -> list[str]:
        """``metdata evaluate`` of the run on the validation side."""
        return ["evaluate", "--data", self.root, "--model", self.run_url, "--split", "val"]

    def predict(self, image: str) -> list[str]:
        """``metdata predict`` of one image path or URL."""
        return ["predict", "--model", self.run_url, "--json", image]

    def serve(self) -> list[str]:
        """``metdata serve`` of the run, with its dataset (random paintings, confusion matrix)."""
        return ["serve", "--model", self.run_url, "--data", self.root]


def run_command(args: list[str], capture: bool = False) -> str:
    """Run one metdata command as a user would; stop the demo if it fails. Returns its stdout."""
    click.echo(click.style("$ metdata " + " ".join(args), bold=True))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "metdata", *args], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"'metdata {args[0]}' failed with exit code {result.returncode}")
    click.echo(f"  ({time.monotonic() - started:.0f} s)")
    return result.stdout if capture else ""


def held_out_painting(dataset: Dataset, run_url: str) -> dict:
    """A validation-side painting of the run's split: its objectID, class and image URL.

    Raises:
        click.ClickException: the split has no validation image.
    """
    run = Dataset(run_url, dataset.storage_options)
    split = run.read_table("split.parquet").to_pylist()
    val = sorted((r for r in split if r["side"] == "val"), key=lambda r: r["objectID"])
    if not val:
        raise click.ClickException(f"{run_url}/split.parquet has no validation image to predict")
    chosen = val[len(val) // 2]
    objects = pads.dataset(dataset.path("objects"), filesystem=dataset.fs, format="parquet")
    row = objects.to_table(
        columns=["objectID", "title", "primaryImageSmall"],
        filter=pads.field("objectID") == chosen["objectID"],
    ).to_pylist()[0]
    return {**row, "class": chosen["class"]}


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
    default=5_000,
    show_default=True,
    help="Size of the emulated collection (about 1 in 10 objects is a painting of the four cultures).",
)
@click.option("--epochs", type=click.IntRange(1), default=15, show_default=True, help="Training epochs.")
@click.option("--data", help="Dataset root (default WORKDIR/data); an s3:// URL works too.")
@click.option("--size", type=click.IntRange(8, 1024), default=150, show_default=True, help="Image side in pixels.")
@click.option(
    "--rate",
    type=FiniteFloat(0.1, 80),
    default=25.0,
    show_default=True,
    help="Requests/s for the whole cluster (the demo emulator's budget is 30/s).",
)
@click.option(
    "--faults",
    default=DEMO_FAULTS,
    show_default=True,
    help=f"The emulator's fault kinds, comma-separated ('' for none): {', '.join(KINDS)}.",
)
@click.option("--fault-rate", type=FiniteFloat(0, 1), default=0.02, show_default=True)
@click.option("--serve", "keep_serving", is_flag=True, help="At the end, serve the model in a browser (Ctrl-C stops).")
def demo(
    workdir: Path,
    objects: int,
    epochs: int,
    data: str | None,
    size: int,
    rate: float,
    faults: str,
    fault_rate: float,
    keep_serving: bool,
) -> None:
    """Run the whole pipeline offline against a local Met emulator: acquire, explore, train, predict."""
    try:
        config = emulator_config(objects, faults, fault_rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from exc
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with MetEmulator(config) as met:
        click.echo(f"Met emulator: {met.url}  ({objects} objects, bot protection and faults on)")
        steps = Pipeline(met.url, data or str(workdir / "data"), workdir, rate=rate, size=size, epochs=epochs)
        dataset = Dataset(steps.root)
        image_runs = []  # images/_summary.json holds the last run only
        for args in [*steps.acquire(), steps.explore(), steps.train(), steps.evaluate()]:
            run_command(args)
            if args[0] == "images":
                image_runs.append(dataset.read_json(layout.store_summary(layout.DEFAULT_STORE))["this_run"])
        painting = held_out_painting(dataset, steps.run_url)
        prediction = json.loads(run_command(steps.predict(painting["primaryImageSmall"]), capture=True))[0]
        counters = requests.get(f"{met.base}/__emulator__/stats", timeout=5).json()
    summarize(dataset, steps, objects, image_runs, painting, prediction, counters, time.monotonic() - started)
    if keep_serving:
        click.echo(click.style("$ metdata " + shlex.join(steps.serve()), bold=True))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the server, and the demo with it
            subprocess.run([sys.executable, "-m", "metdata", *steps.serve()], check=False)


def summarize(
    dataset: Dataset,
    steps: Pipeline,
    objects: int,
    image_runs: list,
    painting: dict,
    prediction: dict,
    counters: dict,
    took: float,
) -> None:
    """Print where everything is and what came out."""
    runs = [dataset.read_json(name) for name in dataset.data_files(RUNS, suffix=".json")]
    table = pads.dataset(dataset.path("objects"), filesystem=dataset.fs, format="parquet").to_table(
        columns=["objectID", "status"]
    )
    statuses = Counter(table["status"].to_pylist())
    images = dataset.read_json(layout.store_summary(layout.DEFAULT_STORE))
    run = Dataset(steps.run_url, dataset.storage_options)
    trained, evaluation = run.read_json("run.json"), run.read_json("evaluation-val.json")
    best = prediction["top"][0]
    click.echo("")
    click.echo(click.style(f"Summary ({took / 60:.1f} min)", bold=True))
    search = read_listing_meta(dataset).get("search")
    if search:
        click.echo(
            f"  candidates:          {table.num_rows} of the collection's {objects} objects looked up "
            f"({search['requests']} search requests for {len(search['queries'])} queries of {search['target']})"
        )
    click.echo(f"  objects by status:   {dict(sorted(statuses.items()))}  ({table.num_rows} rows)")
    click.echo(f"  images by status:    {images['slots_by_status']}  ({images['selected']} selected)")
    click.echo(f"  emulator saw:        {json.dumps(counters)}")
    for i, ingest in enumerate(runs, 1):
        click.echo(f"  ingest run {i}:        {json.dumps(ingest['this_run'])}")
    for i, images_run in enumerate(image_runs, 1):
        click.echo(f"  images run {i}:        {json.dumps(images_run)}")
    click.echo(f"  metadata (Parquet):  {dataset.url_of(layout.OBJECTS)}")
    click.echo(f"  images (Zarr):       {images['store']}")
    click.echo(f"  report (HTML):       {steps.workdir / 'report' / 'report.html'}")
    click.echo(
        f"  training:            {trained['train_images']} train / {trained['val_images']} val images, "
        f"{trained['epochs_run']} epochs, classes {', '.join(trained['classes'])}"
    )
    click.echo(
        f"  validation accuracy: {evaluation['accuracy']:.3f} (best checkpoint; chance "
        f"{1 / len(trained['classes']):.2f})"
    )
    click.echo(f"  model:               {steps.run_url}/best.keras")
    click.echo(
        f"  prediction:          object {painting['objectID']} ({painting['class']}, held out): "
        f"{best['class']} ({best['probability']:.2f})"
    )
    click.echo(f"  try it in a browser: metdata {shlex.join(steps.serve())}")
