"""``metdata ids`` and ``metdata ingest``: the id listing, then every id to Parquet."""

from __future__ import annotations

import json
import logging

import click

from metdata.cli.options import (
    DepartmentIds,
    IsoDate,
    JsonObject,
    api_option,
    cluster_option,
    data_option,
    fail_cleanly,
    storage_option,
    tuning_options,
)

log = logging.getLogger(__name__)


def _pace_and_lookup(api, rate, adaptive, cooldown, max_in_flight, timeout, max_attempts):
    from metdata.lookup import LookupOptions
    from metdata.pacing import PaceConfig

    return (
        LookupOptions(api=api, max_in_flight=max_in_flight, timeout=timeout, max_attempts=max_attempts),
        PaceConfig(rate=rate, adaptive=adaptive, cooldown=cooldown),
    )


@click.command()
@api_option
@data_option
@click.option("--department-ids", type=DepartmentIds(), help="Keep these departments, e.g. '6|11'.")
@click.option("--metadata-date", type=IsoDate(), help="Keep objects updated after this date.")
@storage_option
@tuning_options
def ids(api, data, department_ids, metadata_date, storage_options, **tuning) -> None:
    """Snapshot the id listing into the dataset root (ids/listing.parquet).

    One paced request: no cluster needed.
    """
    from metdata.dataset import Dataset
    from metdata.jobs.ingest import take_listing

    lookup, pace = _pace_and_lookup(api, **tuning)
    dataset = Dataset(data, storage_options)
    listed = fail_cleanly(take_listing, dataset, lookup, pace, department_ids, metadata_date)
    click.echo(f"{len(listed)} object ids snapshotted under {data}")


@click.command()
@api_option
@data_option
@cluster_option
@tuning_options
@click.option(
    "--shard-size",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Ids per shard (one Dask task and one Parquet file each).",
)
@click.option("--retry-failed", is_flag=True, help="Look up again the ids whose last outcome was retryable.")
@click.option("--since", type=IsoDate(), help="Refresh objects updated after this date, merging them in.")
@click.option(
    "--from-csv",
    "from_csv",
    metavar="PATH_OR_URL",
    help="Load metadata from the Open Access MetObjects.csv instead of looking it up: a path, an http(s):// "
    "or s3:// URL, read as a stream (the museum's URL is below).",
)
@click.option("--csv-storage-options", type=JsonObject(), default="{}", help="fsspec options for an s3:// --from-csv.")
@click.option(
    "--csv-max-mb",
    type=click.IntRange(1),
    default=2048,
    show_default=True,
    help="Refuse a --from-csv source larger than this (the museum's file is 318 MB).",
)
@storage_option
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Worker processes of --cluster local (default: cores).",
)
def ingest(
    api,
    data,
    cluster,
    shard_size,
    retry_failed,
    since,
    from_csv,
    csv_storage_options,
    csv_max_mb,
    storage_options,
    workers,
    **tuning,
) -> None:
    """Look every listed object up and write it to Parquet shards under ROOT/objects/.

    Resumable: finished shards are skipped, so rerunning the same command continues.

    \b
    --from-csv: the Open Access MetObjects.csv is a file of the metmuseum/openaccess GitHub
    repository (stored with Git LFS; the file dates from 2023-06-17, 318 MB). Its raw download:
    https://media.githubusercontent.com/media/metmuseum/openaccess/master/MetObjects.csv
    (https://github.com/metmuseum/openaccess/raw/master/MetObjects.csv redirects there)
    """
    from metdata.cluster import connect
    from metdata.dataset import Dataset
    from metdata.jobs.ingest import IngestOptions, load_csv, plan, run, writing

    lookup, pace = _pace_and_lookup(api, **tuning)
    options = IngestOptions(
        lookup=lookup,
        pace=pace,
        shard_size=shard_size,
        retry_failed=retry_failed,
        since=since,
        from_csv=from_csv,
        csv_storage_options=csv_storage_options,
        csv_max_bytes=csv_max_mb << 20,
    )

    dataset = Dataset(data, storage_options)

    def go():
        if from_csv:
            return load_csv(dataset, options)
        with writing(dataset):  # one ingest per root, from its plan to its summary
            planned = plan(dataset, options)  # bad input fails here, before a cluster starts
            if not planned.tasks:
                return run(None, dataset, options, planned)
            with connect(cluster, workers=workers) as client:
                return run(client, dataset, options, planned)

    summary = fail_cleanly(go)
    click.echo(json.dumps(summary, indent=2))
