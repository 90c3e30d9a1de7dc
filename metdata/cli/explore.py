"""``metdata explore``: figures and one self-contained HTML report of a dataset."""

from __future__ import annotations

import json

import click

from metdata.cli.options import data_option, fail_cleanly, storage_option, store_option


@click.command()
@data_option
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, writable=True),
    help="A local folder for the PNG figures and report.html (created if missing).",
)
@click.option(
    "--target",
    default="painting-culture",
    show_default=True,
    help="The target of the per-class grid and the rules figure: a built-in name or a .toml file.",
)
@click.option(
    "--top",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    help="Categories shown per bar chart.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the choice of the images shown.")
@store_option
@storage_option
def explore(data, out, target, top, seed, store, storage_options) -> None:
    """Write figures of the collection, its statuses, classifications, target and images, and
    report.html embedding them all; print the report's path and the main counts.

    Works on metadata alone: without an images store, the report says what is missing and
    which command builds it.
    """
    from metdata.explore.explore import ExploreOptions
    from metdata.explore.explore import explore as run
    from metdata.storage.dataset import Dataset

    options = ExploreOptions(out=out, target=target, top=top, seed=seed, store=store)
    summary = fail_cleanly(run, Dataset(data, storage_options), options)
    click.echo(json.dumps(summary, indent=2))
