"""Loading MetObjects.csv rows into ``objects/``: all or nothing.

One streaming pass over one file (local, http(s) or s3, ``opencsv``): rows of ids without a row
yet are staged under hidden names of this load, published only once the whole file is read and
checked; on any failure the staged shards are deleted and the root is as it was. Rows already
looked up through the API are richer (image URLs, measurements) and are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable

import pyarrow as pa

from metdata.acquire.ingest import row_ids
from metdata.acquire.listing import listing_with, read_listing_meta, write_listing
from metdata.acquire.opencsv import open_csv
from metdata.core.progress import Progress
from metdata.core.records import rows_to_table
from metdata.core.schema import MAX_OBJECT_ID
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.layout import CSV_SOURCE, CSV_STAGED, OBJECTS, csv_staged_shard, object_shard

log = logging.getLogger(__name__)


def load(dataset: Dataset, url: str, storage_options: dict, max_bytes: int, shard_size: int) -> tuple[dict, list[int]]:
    """Load the CSV at ``url``: stage, check, publish its shards, extend the listing, record the
    source (``layout.CSV_SOURCE``: URL, bytes, sha256, rows). Returns the source's record and
    the ids that got a row.

    Raises:
        DatasetError, CsvError: a bad root, or a source that is missing, unreachable, too large,
            not MetObjects.csv, or cut (the root is left as it was).
    """
    if left := discard_csv_shards(dataset):  # the caller holds the lease: these are killed loads' leftovers
        log.info("removed %d shards staged by an earlier CSV load that did not finish", left)
    listing_with(dataset, [])  # a foreign listing fails here, before the file is read
    previous = read_listing_meta(dataset)  # a search's record is kept (ingest --since --target)
    this_load = uuid.uuid4().hex
    try:
        with (
            open_csv(url, storage_options, max_bytes) as reader,
            Progress(reader.size or 0, "CSV bytes read") as progress,
        ):
            reader.report_bytes(progress.update)
            added = write_csv_shards(dataset, reader.batches(), shard_size, this_load)
        source = reader.source
        publish_csv_shards(dataset, this_load)
    except BaseException:  # a bad file, an interrupt, a full disk: nothing of this load stays
        discard_csv_shards(dataset, this_load)
        raise
    record = {**source.as_dict(), "new_rows": len(added), "loaded_at": dt.datetime.now(dt.UTC).isoformat()}
    write_listing(dataset, listing_with(dataset, added), {"from_csv": url}, previous=previous)
    dataset.write_json(CSV_SOURCE, record)
    log.info(
        "%s: %d rows, %d bytes, sha256 %s; %d new rows",
        source.url,
        source.rows,
        source.bytes,
        source.sha256,
        len(added),
    )
    return record, added


def write_csv_shards(dataset: Dataset, batches: Iterable[list[dict]], shard_size: int, load: str) -> list[int]:
    """Stage MetObjects.csv rows (status ``csv``) of every id that has no row yet, in shards of
    ``shard_size`` sorted ids, under hidden names of this ``load`` (``layout.csv_staged_shard``);
    returns the ids staged. Rows already looked up through the API are richer (image URLs,
    measurements) and are kept; an id twice in the file keeps its first row.

    Nothing is published here: ``publish_csv_shards`` does that once the whole file is read and
    checked, ``discard_csv_shards`` removes the staged files of a load that failed.
    """
    seen = row_ids(dataset)
    added: list[int] = []
    pending: list[pa.Table] = []  # Arrow, not dicts: a shard's rows in flight take ~7x less memory
    held = 0

    for batch in batches:
        fresh = []
        for row in batch:
            object_id = row["objectID"]
            if object_id is None or not 1 <= object_id <= MAX_OBJECT_ID or object_id in seen:
                continue
            seen.add(object_id)
            fresh.append(row)
            added.append(object_id)
        if fresh:
            pending.append(rows_to_table(fresh))
            held += len(fresh)
        while held >= shard_size:
            rows = pa.concat_tables(pending).sort_by("objectID")
            shard, rest = rows.slice(0, shard_size), rows.slice(shard_size)
            dataset.write_table(csv_staged_shard(shard["objectID"][0].as_py(), load), shard)
            pending, held = [rest], rest.num_rows
    if held:
        rows = pa.concat_tables(pending).sort_by("objectID")
        dataset.write_table(csv_staged_shard(rows["objectID"][0].as_py(), load), rows)
    return added


def staged_csv_shards(dataset: Dataset, load: str | None = None) -> list[tuple[str, int]]:
    """The staged CSV shards of one load (``None``: of every load) as (relative path, first id)."""
    found = []
    for name in dataset.hidden_files(OBJECTS):
        match = CSV_STAGED.fullmatch(name)
        if match and (load is None or match.group(2) == load):
            found.append((f"{OBJECTS}/{name}", int(match.group(1))))
    return found


def publish_csv_shards(dataset: Dataset, load: str) -> int:
    """Give a finished load's staged shards their final names (``layout.object_shard``); returns how many.

    Raises:
        DatasetError: a shard of that name exists already (another tool's file: the load's own ids
            have no row, so no metdata shard starts at one of them); nothing of the load is published.
    """
    staged = staged_csv_shards(dataset, load)
    taken = [object_shard(first) for _, first in staged if dataset.exists(object_shard(first))]
    if taken:
        raise DatasetError(
            f"{dataset.url_of(taken[0])} exists but holds none of the ids a CSV shard of that name would: "
            f"another tool's file? Move it out of {OBJECTS}/ and rerun"
        )
    for name, first in staged:
        dataset.move(name, object_shard(first))
    return len(staged)


def discard_csv_shards(dataset: Dataset, load: str | None = None) -> int:
    """Delete the staged shards of a load that failed (``None``: of every load, e.g. killed ones);
    returns how many."""
    staged = staged_csv_shards(dataset, load)
    for name, _ in staged:
        dataset.remove(name)
    return len(staged)
