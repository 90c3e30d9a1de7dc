"""``metdata ids`` and ``metdata ingest``: the id listing, then every id to Parquet."""

from __future__ import annotations

import json
import logging

import click

from metdata.cli.options import (
    DepartmentIds,
    IsoDate,
    JsonObject,
    NonEmpty,
    api_option,
    cluster_option,
    data_option,
    fail_cleanly,
    storage_option,
    tuning_options,
)

log = logging.getLogger(__name__)


def _pace_and_lookup(api, rate, adaptive, cooldown, max_in_flight, timeout, max_attempts):
    from urllib.parse import urlsplit

    from metdata.acquire.lookup import LookupOptions
    from metdata.net.pacing import PaceConfig, check_rate

    fail_cleanly(check_rate, rate, [urlsplit(api).netloc])  # the Met's ceiling, before anything starts
    return (
        LookupOptions(api=api, max_in_flight=max_in_flight, timeout=timeout, max_attempts=max_attempts),
        PaceConfig(rate=rate, adaptive=adaptive, cooldown=cooldown),
    )


def search_queries(target: str | None, searches: tuple[str, ...]):
    """The target's search queries and the ``--search`` ones, checked (before any request).

    Raises:
        TargetError: an unknown target, or one without queries (its note says what to do instead).
        SearchQueryError: a query the service would misread.
    """
    from metdata.core.searchquery import Query
    from metdata.core.targets import TargetError, resolve

    queries = [Query.parse(text) for text in searches]
    name = None
    if target is not None:
        chosen = resolve(target)
        name = chosen.name
        if not chosen.search.queries and not queries:
            raise TargetError(
                f"target {chosen.name!r} has no search queries: {chosen.search.note or 'its [search] gives none'}"
            )
        queries = list(chosen.search.queries) + queries
    return name, queries


@click.command()
@api_option
@data_option
@click.option("--department-ids", type=DepartmentIds(), help="Keep these departments, e.g. '6|11'.")
@click.option("--metadata-date", type=IsoDate(), help="Keep objects updated after this date.")
@click.option(
    "--target",
    type=NonEmpty("a target's name or .toml file"),
    metavar="NAME",
    help="Take a target's candidates through /v1.1/search (its [search] queries), e.g. painting-culture.",
)
@click.option(
    "--search",
    "searches",
    type=NonEmpty("a query such as 'departmentId=6&medium=Paintings'"),
    multiple=True,
    metavar="QUERY",
    help="Take the ids of a search query, e.g. 'departmentId=6&medium=Paintings&hasImages=true' (repeatable).",
)
@click.option("--add", is_flag=True, help="Merge the search's ids into the listing instead of replacing it.")
@storage_option
@tuning_options
def ids(api, data, department_ids, metadata_date, target, searches, add, storage_options, **tuning) -> None:
    """Snapshot the id listing into the dataset root (ids/listing.parquet).

    Without --target/--search: the whole listing, one paced request. With them: the candidates the
    search finds (every query paged to its exact total, split past the 10,000-result window), their
    queries and totals recorded in ids/_listing.json; 'metdata ingest' then looks up only those.
    """
    from metdata.jobs.ingest import take_listing, take_search
    from metdata.storage.dataset import Dataset

    searching = bool(target or searches)
    if searching and (department_ids or metadata_date):
        raise click.UsageError("--department-ids and --metadata-date filter the listing: not with --target/--search")
    if add and not searching:
        raise click.UsageError("--add merges a search's ids into the listing: give --target or --search")
    lookup, pace = _pace_and_lookup(api, **tuning)
    dataset = Dataset(data, storage_options)
    if not searching:
        listed = fail_cleanly(take_listing, dataset, lookup, pace, department_ids, metadata_date)
        click.echo(f"{len(listed)} object ids snapshotted under {data}")
        return
    from metdata.acquire.search import search_url

    name, queries = fail_cleanly(search_queries, target, searches)
    fail_cleanly(search_url, api)  # before the lease: a bad --api leaves nothing behind
    listed, record = fail_cleanly(take_search, dataset, lookup, pace, queries, name, add)
    click.echo(
        f"{record['distinct_ids']} candidate ids from {len(record['queries'])} search queries "
        f"({record['requests']} requests); "
        f"{len(listed)} ids listed under {data}"
    )


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
    "--target",
    type=NonEmpty("a target's name or .toml file"),
    metavar="NAME",
    help="With --since: refresh only this target's candidates (the listing 'metdata ids --target' took).",
)
@click.option(
    "--from-csv",
    "from_csv",
    type=NonEmpty("MetObjects.csv's path or URL"),
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
    target,
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
    from metdata.jobs.ingest import IngestOptions, load_csv, plan, run, writing
    from metdata.storage.dataset import Dataset

    if target is not None and not since:
        raise click.UsageError("--target refreshes a target's candidates: give --since DATE too")
    if target is not None and from_csv is not None:
        raise click.UsageError("--target goes with --since, not --from-csv")
    lookup, pace = _pace_and_lookup(api, **tuning)
    if target:
        from metdata.core.targets import resolve

        target = fail_cleanly(resolve, target).name
    options = IngestOptions(
        target=target,
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
        if from_csv is not None:
            return load_csv(dataset, options)
        with writing(dataset):  # one ingest per root, from its plan to its summary
            planned = plan(dataset, options)  # bad input fails here, before a cluster starts
            if not planned.tasks:
                return run(None, dataset, options, planned)
            with connect(cluster, workers=workers) as client:
                return run(client, dataset, options, planned)

    summary = fail_cleanly(go)
    click.echo(json.dumps(summary, indent=2))
