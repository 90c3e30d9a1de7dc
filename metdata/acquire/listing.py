"""The id listing snapshot (``ids/``): the ids a run looks up, how they were taken, and a target's
search candidates.

``take_listing`` (the listing endpoint, one request) and ``take_search`` (a target's queries)
write the pair ``ids/listing.parquet`` + ``ids/_listing.json`` together; ``--add`` merges, a
CSV load or a ``--since`` refresh extends the listing and keeps the search's record (``previous``)
so that ``ingest --since --target`` still finds the target's candidates.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metdata.acquire.lookup import LookupOptions, checked_ids, fetch_listing
from metdata.acquire.search import search_all, search_url, snapshot_record
from metdata.core.schema import MAX_OBJECT_ID
from metdata.core.searchquery import Query
from metdata.net.pacing import LocalPacer, PaceConfig
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.layout import LISTING, LISTING_META, target_candidates

log = logging.getLogger(__name__)


def take_listing(
    dataset: Dataset,
    lookup: LookupOptions,
    pace: PaceConfig,
    department_ids: str | None = None,
    metadata_date: str | None = None,
) -> list[int]:
    """Fetch the id listing (one request, paced) and snapshot it into the dataset."""
    ids = fetch_listing(lookup, LocalPacer(pace), department_ids, metadata_date)
    write_listing(dataset, ids, {"departmentIds": department_ids, "metadataDate": metadata_date})
    log.info("listing: %d ids snapshotted to %s", len(ids), dataset.path(LISTING))
    return ids


def take_search(
    dataset: Dataset,
    lookup: LookupOptions,
    pace: PaceConfig,
    queries: list[Query],
    target: str | None = None,
    add: bool = False,
) -> tuple[list[int], dict]:
    """Snapshot the ids the search queries find as the listing (merged into the old one with
    ``add``), with their totals and splits in ``ids/_listing.json``. Nothing is written unless
    every query was read completely.

    Returns the listing's ids and the search record.

    Raises:
        SearchError, SearchQueryError: a query that could not be read completely (named).
        DatasetError: a bad root or a listing metdata did not write.
    """
    search_url(lookup.api)  # a bad --api fails before anything
    listed = dataset.exists(LISTING)
    old = read_listing(dataset) if add and listed else []  # without --add it is replaced unread
    previous = read_listing_meta(dataset) if add and listed else None
    done, requests = search_all(queries, lookup, LocalPacer(pace))
    found = set().union(*(s.ids for s in done))
    ids = merged_listing(old, found, add)
    record = snapshot_record(lookup.api, target, done, requests, len(old) if add else None)
    if previous is not None:
        record["previous"] = previous
    elif listed and not add:
        log.info("replacing the listing snapshot by the %d ids the search found", len(found))
    if target is not None:  # what a later 'ingest --since --target' refreshes
        record["candidates"] = len(write_candidates(dataset, target, found, previous))
    filters = {"search": target or [q.text for q in queries], "add": add}
    write_listing(dataset, ids, filters, search=record)
    log.info("search: %d distinct ids in %d requests; listing of %d ids", len(found), requests, len(ids))
    return ids, record


def write_listing(
    dataset: Dataset,
    ids: list[int] | np.ndarray,
    filters: dict,
    search: dict | None = None,
    previous: dict | None = None,
) -> None:
    """Snapshot the id listing (and how it was taken: ``filters``, and ``search``, the queries of
    ``metdata ids --target/--search`` with their totals and splits) into the dataset (``ids``: a
    list, or a NumPy array of distinct ids). ``previous``: the record of the listing this one
    extends (a CSV load, a ``--since`` refresh), kept when it names searches (``searched_targets``),
    so that ``ingest --since --target`` still finds the target's candidates.

    The pair (``ids/listing.parquet``, ``ids/_listing.json``) is replaced together: if the record
    cannot be written, the old listing is put back (or the new one removed), so a failure leaves
    the old pair.

    Raises:
        DatasetError: the pair could not be written (the old pair is kept).
    """
    ids = np.sort(ids) if isinstance(ids, np.ndarray) else sorted(ids)
    meta: dict = {"total": len(ids), "filters": filters, "taken_at": dt.datetime.now(dt.UTC).isoformat()}
    if search is not None:
        meta["search"] = search
    if previous and searched_targets(previous):
        meta["previous"] = previous
    record = json.dumps(meta, indent=2, default=str, allow_nan=False).encode()
    try:
        old = dataset.read_bytes(LISTING) if dataset.exists(LISTING) else None
        dataset.write_table(LISTING, pa.table({"objectID": pa.array(ids, pa.int64())}), dictionary=False)
    except OSError as exc:
        raise _unwritten(dataset, exc) from exc
    try:
        dataset.write_bytes(LISTING_META, record)
    except BaseException as exc:  # put the old listing back: never a listing without its own record
        if old is None:
            dataset.remove(LISTING)
        else:
            dataset.write_bytes(LISTING, old)
        if isinstance(exc, OSError):
            raise _unwritten(dataset, exc) from exc
        raise


def _unwritten(dataset: Dataset, exc: OSError) -> DatasetError:
    return DatasetError(
        f"the listing under {dataset.url_of('ids')} could not be written ({type(exc).__name__}: {str(exc)[:200]}); "
        f"the old one is kept: check that {dataset.url_of(LISTING)} and {dataset.url_of(LISTING_META)} are files "
        "metdata may write (free space, permissions, nothing else under those names), then rerun"
    )


def write_candidates(dataset: Dataset, target: str, ids: set[int], merged_into: dict | None) -> list[int]:
    """Save a target's search candidates (``layout.target_candidates``); returns them. With
    ``merged_into``, the record of the listing an ``--add`` merges into: if its searches name the
    same target (``searched_targets``), the candidates saved before are kept too (an ``--add``
    chain); otherwise they are replaced (a file left by a listing since replaced is stale).

    Raises:
        DatasetError: a candidates file metdata did not write, or one it cannot write.
    """
    relative = target_candidates(target)
    chained = merged_into is not None and target in searched_targets(merged_into) and dataset.exists(relative)
    old = set(read_candidates(dataset, target)) if chained else set()
    merged = sorted(old | ids)
    try:
        dataset.write_table(relative, pa.table({"objectID": pa.array(merged, pa.int64())}), dictionary=False)
    except OSError as exc:
        raise DatasetError(
            f"{dataset.url_of(relative)} could not be written ({type(exc).__name__}: {str(exc)[:200]}); "
            "free space or fix the root, then rerun"
        ) from exc
    return merged


def read_candidates(dataset: Dataset, target: str) -> list[int]:
    """A target's search candidates, saved by ``metdata ids --target``.

    Raises:
        DatasetError: none saved (taken before they were kept, or by another tool), or a bad file.
    """
    relative = target_candidates(target)
    if not dataset.exists(relative):
        raise DatasetError(
            f"{dataset.url_of(relative)} is missing: the candidates of target {target!r} were not saved; "
            f"run 'metdata ids --target {target} --add --data {dataset.url}' (it keeps what is listed), then this again"
        )
    fix = f"run 'metdata ids --target {target} --data {dataset.url}' again"
    return _read_ids(dataset, relative, "a candidates file metdata wrote", fix)


def read_listing_meta(dataset: Dataset) -> dict:
    """How the listing snapshot was taken (``{}`` if nothing says).

    Raises:
        DatasetError: the file is not the JSON object ``write_listing`` wrote.
    """
    if not dataset.exists(LISTING_META):
        return {}
    try:
        meta = dataset.read_json(LISTING_META)
    except (ValueError, OSError):  # not JSON, not UTF-8, a folder in its place
        meta = None
    if not isinstance(meta, dict):
        raise DatasetError(
            f"{dataset.url_of(LISTING_META)} is not what metdata wrote: take the listing again with 'metdata ids'"
        )
    return meta


def merged_listing(old: list[int], found: set[int], add: bool) -> list[int]:
    """The listing after a search: the union with the old one (``--add``), else the search's ids.

    >>> merged_listing([1, 5], {5, 7}, add=True), merged_listing([1, 5], {5, 7}, add=False)
    ([1, 5, 7], [5, 7])
    """
    return sorted(set(old) | found) if add else sorted(found)


def searched_targets(meta: dict) -> set[str]:
    """The targets whose search made the listing (``ids/_listing.json``, ``--add`` merges included).

    >>> sorted(searched_targets({"search": {"target": "a", "previous": {"search": {"target": "b"}}}}))
    ['a', 'b']
    >>> sorted(searched_targets({"filters": {"since": "2020-01-01"}, "previous": {"search": {"target": "c"}}}))
    ['c']
    """
    names: set[str] = set()
    for _ in range(1000):  # a chain of --add merges, CSV loads and refreshes; bounded whatever the file says
        if not isinstance(meta, dict):
            break
        search = meta.get("search")
        if isinstance(search, dict):
            if isinstance(search.get("target"), str):
                names.add(search["target"])
            meta = search.get("previous") or meta.get("previous")
        else:
            meta = meta.get("previous")
    return names


def check_candidates(meta: dict, target: str, url: str) -> None:
    """Check the listing snapshot holds a target's search candidates (for ``--since --target``).

    Raises:
        DatasetError: it was taken otherwise (the message gives the command that takes it).
    """
    if target not in searched_targets(meta):
        raise DatasetError(
            f"the listing under {url} does not hold the candidates of target {target!r} (it was not taken by "
            f"'metdata ids --target {target}'): run 'metdata ids --target {target} --data {url}' "
            "(with --add to keep what is listed), then this again"
        )


def refresh_ids(updated: list[int], candidates: list[int]) -> list[int]:
    """The ids a ``--since --target`` refresh looks up: the updated ones among the target's
    candidates (``read_candidates``), not among the whole listing (a CSV's rows are in it too).

    >>> refresh_ids([3, 4, 9], [1, 3, 9])
    [3, 9]
    """
    return sorted(set(updated) & set(candidates))


def listing_with(dataset: Dataset, added: list[int]) -> np.ndarray:
    """The listing's ids and ``added``, each once and sorted, as a NumPy array (8 bytes an id,
    where a Python set takes ~60 and Arrow's hash table ~170)."""
    old = read_listing_array(dataset).to_numpy() if dataset.exists(LISTING) else np.array([], np.int64)
    return np.unique(np.concatenate([old, np.fromiter(added, np.int64, len(added))]))


def read_listing_array(dataset: Dataset) -> pa.Array:
    """The snapshotted ids as an Arrow array, checked as ``read_listing`` checks them.

    Raises:
        DatasetError: the listing file is not one ``metdata ids`` wrote (bad ids or columns).
    """
    ids = _ids_table(dataset, LISTING)["objectID"].combine_chunks()
    bounds = pc.min_max(ids).as_py()
    if ids.null_count or (len(ids) and not 1 <= bounds["min"] <= bounds["max"] <= MAX_OBJECT_ID):
        read_listing(dataset)  # raises with the message of the id at fault
    return ids


def read_listing(dataset: Dataset) -> list[int]:
    """The snapshotted ids.

    Raises:
        DatasetError: the listing file is not one ``metdata ids`` wrote (bad ids or columns).
    """
    fix = f"take it again with 'metdata ids --data {dataset.url}'"
    return _read_ids(dataset, LISTING, "a listing metdata took", fix)


def _ids_table(dataset: Dataset, relative: str) -> pa.Table:
    return dataset.read_table(relative, columns=["objectID"], schema=pa.schema([("objectID", pa.int64())]))


def _read_ids(dataset: Dataset, relative: str, what: str, fix: str) -> list[int]:
    """The checked ids of a file of ids (the listing, a target's candidates).

    Raises:
        DatasetError: naming the file, what it should be, and the fix.
    """
    try:
        return checked_ids(_ids_table(dataset, relative)["objectID"].to_pylist())
    except ValueError as exc:
        raise DatasetError(f"{dataset.url_of(relative)} is not {what} ({exc}): {fix}") from exc
