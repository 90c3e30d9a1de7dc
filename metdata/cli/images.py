"""``metdata images``: the selected objects' images into ROOT/images.zarr."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import click

from metdata.cli.options import (
    StoreName,
    api_option,
    cluster_option,
    data_option,
    fail_cleanly,
    storage_option,
    store_option,
    tuning_options,
)
from metdata.storage.layout import DEFAULT_STORE


@click.command()
@data_option
@api_option
@click.option("--target", help="Take the objects of a training target, e.g. painting-culture.")
@click.option(
    "--where",
    metavar="EXPR",
    help="A SQL condition over the metadata columns, e.g. \"department = 'Asian Art'\".",
)
@click.option(
    "--size",
    type=click.IntRange(8, 1024),
    default=150,
    show_default=True,
    help="Side of the square images, in pixels.",
)
@click.option(
    "--resize",
    type=click.Choice(["squash", "pad", "crop"]),
    default="squash",
    show_default=True,
    help="squash: stretch to the square (the blog's way); pad: keep the aspect ratio with a "
    "border; crop: fill the square and keep the centre.",
)
@click.option(
    "--rendition",
    type=click.Choice(["web-large", "original"]),
    default="web-large",
    show_default=True,
    help="web-large (primaryImageSmall, ~100 KB) or original (primaryImage, up to 8 MB).",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Images per Zarr chunk and per task.",
)
@store_option
@click.option("--keep-originals", is_flag=True, help="Keep the downloaded bytes in the status shards.")
@click.option(
    "--from-originals",
    metavar="STORE",
    type=StoreName(),
    is_flag=False,
    flag_value=DEFAULT_STORE,
    help=f"Build from the bytes STORE kept with --keep-originals (default {DEFAULT_STORE}): no download.",
)
@click.option(
    "--allow-host",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Also download images from this host (the Met's image host and the --api host always are).",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=50 << 20,
    show_default=True,
    help="A download longer than this is recorded as too_large.",
)
@click.option("--retry-failed", is_flag=True, help="Fetch again the images whose last outcome was retryable.")
@cluster_option
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Workers of --cluster local (default: cores).",
)
@click.option(
    "--processes",
    is_flag=True,
    help="Run --cluster local's workers as processes under nannies (restarted if they die or outgrow "
    "memory). Default: in this process, as threads (downloads, decoding and encoding run outside the "
    "GIL), which starts ~2 s of CPU cheaper.",
)
@storage_option
@tuning_options
def images(
    data,
    api,
    target,
    where,
    size,
    resize,
    rendition,
    chunk,
    store,
    keep_originals,
    from_originals,
    allow_host,
    max_bytes,
    retry_failed,
    cluster,
    workers,
    processes,
    storage_options,
    rate,
    adaptive,
    cooldown,
    max_in_flight,
    timeout,
    max_attempts,
) -> None:
    """Download, decode and resize the selected images into a chunked Zarr array.

    Resumable: finished chunks are skipped, so rerunning the same command continues.
    """
    if target and where:
        raise click.UsageError("give --target or --where, not both")
    if processes and cluster != "local":
        raise click.UsageError("--processes is for --cluster local: a running cluster's workers are what it started")
    from metdata.acquire.lookup import LookupOptions
    from metdata.cluster import connect
    from metdata.images.images import ImageOptions
    from metdata.jobs.images import check_pace, plan, run, writing
    from metdata.net.pacing import MET_IMAGE_HOST, PaceConfig
    from metdata.storage.dataset import Dataset

    hosts = frozenset({MET_IMAGE_HOST, urlsplit(api).netloc, *allow_host})
    options = ImageOptions(
        lookup=LookupOptions(api=api, max_in_flight=max_in_flight, timeout=timeout, max_attempts=max_attempts),
        size=size,
        resize=resize,
        rendition=rendition,
        chunk=chunk,
        store=store,
        keep_originals=keep_originals,
        allowed_hosts=hosts,
        max_bytes=max_bytes,
    )
    pace = PaceConfig(rate=rate, adaptive=adaptive, cooldown=cooldown)
    dataset = Dataset(data, storage_options)

    def go():
        with writing(dataset, options):  # one run per store, from its plan to its summary
            planned = plan(
                dataset, options, target, where, retry_failed, from_originals
            )  # bad input fails before a cluster starts
            if not planned.tasks:
                return run(None, dataset, options, pace, planned)
            check_pace(planned, options, pace)  # the Met's ceiling, before a cluster starts
            with connect(cluster, workers=workers, processes=processes) as client:
                return run(client, dataset, options, pace, planned)

    click.echo(json.dumps(fail_cleanly(go), indent=2))
