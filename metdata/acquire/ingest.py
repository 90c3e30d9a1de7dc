"""The metadata ingestion stage: which ids go into which shard, and one shard's work.

Plain functions; ``jobs/ingest.py`` runs them on Dask. A shard is a Parquet file named after
its first id that one task owns entirely: it reads the shard (when replacing rows), looks its
ids up, and writes the whole file atomically. Running a task twice writes the same rows.

A task does not wait for its slowest answers (``late_after``, ``dispatch``: the tail is handed
on): ids still waiting on a hanging answer or a long backoff when the rest are done are written
``transient`` ("pending") and listed in the result's ``late``; the job runs a follow-up task of
the same shard for them (``follow_up``), with their attempts so far, when their backoff ends. It
replaces just those ids' rows, so each id keeps exactly one row, and only one task per shard is
ever queued or running.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metdata.acquire.api import RETRYABLE
from metdata.acquire.lookup import LATE, MAX_OBJECT_ID, UNEXPECTED, LookupOptions, Pacer, checked_ids, lookup_batch
from metdata.core.progress import report
from metdata.core.records import SCHEMA, rows_to_table
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.layout import (
    CSV_STAGED,
    LISTING,
    LISTING_META,
    OBJECTS,
    csv_staged_shard,
    object_shard,
    target_candidates,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardTask:
    """One task: look up ``ids`` and write them into the shard ``name``.

    ``replace`` keeps the shard's other rows and replaces just these ids' rows. ``tries``: the
    attempts each id already had (a follow-up task, ``follow_up``); None for a first task.
    """

    name: str
    ids: tuple[int, ...]
    replace: bool = False
    tries: tuple[int, ...] | None = None


#: The shard file that starts at an id (``layout.object_shard``).
shard_name = object_shard


def plan_new_shards(ids: list[int], shard_size: int) -> list[ShardTask]:
    """Cut ids (sorted) into shards of ``shard_size``.

    >>> [(t.name[-12:], len(t.ids)) for t in plan_new_shards([5, 1, 9, 7, 3], 2)]
    [('0001.parquet', 2), ('0005.parquet', 2), ('0009.parquet', 1)]
    """
    ids = sorted(ids)
    return [ShardTask(shard_name(ids[i]), tuple(ids[i : i + shard_size])) for i in range(0, len(ids), shard_size)]


#: A task holds about this many seconds of budget: a killed worker wastes at most that much.
TASK_SECONDS = 60.0
#: ... but never fewer ids than this (tiny shards cost more to list and read than they save).
MIN_TASK_IDS = 50


def task_size(new_ids: int, rate: float, task_slots: int, shard_size: int) -> int:
    """Ids per new-shard task: about ``TASK_SECONDS`` of budget, at most ``shard_size``, and small
    enough that a run with few ids still gives every one of the cluster's ``task_slots`` a task.

    >>> task_size(500_000, 80, 4, 1000), task_size(500_000, 1.2, 4, 1000)  # by the budget
    (1000, 72)
    >>> task_size(1000, 80, 4, 1000), task_size(10, 80, 4, 1000)  # few ids: spread over the slots
    (250, 3)
    >>> task_size(500_000, 0, 4, 1000)  # no rate limit (0): a minute of budget is more than a shard
    1000
    """
    by_budget = shard_size if rate == 0 else max(MIN_TASK_IDS, round(rate * TASK_SECONDS))
    spread = -(-new_ids // max(1, task_slots))
    return max(1, min(shard_size, by_budget, spread))


def fit_tasks(tasks: list[ShardTask], rate: float, task_slots: int, shard_size: int) -> list[ShardTask]:
    """Cut the new-shard tasks to ``task_size`` (replacements rewrite whole shards: kept as they are).

    >>> [len(t.ids) for t in fit_tasks(plan_new_shards(list(range(1, 1001)), 1000), 80, 4, 1000)]
    [250, 250, 250, 250]
    """
    new = [t for t in tasks if not t.replace]
    size = task_size(sum(len(t.ids) for t in new), rate, task_slots, shard_size)
    return [t for t in tasks if t.replace] + [piece for t in new for piece in plan_new_shards(list(t.ids), size)]


def plan_replacements(ids: set[int], index: dict[int, tuple[str, str]]) -> list[ShardTask]:
    """Group ids that already have rows by the shard holding them.

    >>> [t.ids for t in plan_replacements({2, 3}, {2: ("a", "ok"), 3: ("a", "ok"), 4: ("b", "ok")})]
    [(2, 3)]
    """
    by_shard: dict[str, list[int]] = {}
    for object_id in sorted(ids):
        by_shard.setdefault(index[object_id][0], []).append(object_id)
    return [ShardTask(name, tuple(members), replace=True) for name, members in sorted(by_shard.items())]


def read_index(dataset: Dataset) -> dict[int, tuple[str, str]]:
    """Map every id that has a row to (its shard, its status); an id in several shards maps to
    the one ``keep_one`` picks (``index_and_duplicates`` also says which rows lose)."""
    return index_and_duplicates(dataset)[0]


def keep_one(holders: list[tuple[str, str]]) -> tuple[str, str]:
    """Of the (shard, status) rows of one id, the one kept: a final outcome before a retryable
    one, then the first shard by name. Deterministic, so every reader agrees.

    >>> keep_one([("objects/part-0000009.parquet", "ok"), ("objects/part-0000001.parquet", "transient")])
    ('objects/part-0000009.parquet', 'ok')
    >>> keep_one([("objects/part-0000009.parquet", "ok"), ("objects/part-0000001.parquet", "ok")])
    ('objects/part-0000001.parquet', 'ok')
    """
    return min(holders, key=lambda h: (h[1] in RETRYABLE, h[0]))


def row_ids(dataset: Dataset) -> set[int]:
    """Every id that has a row (cheaper than ``read_index`` when the shard and status do not matter)."""
    ids: set[int] = set()
    for name in dataset.data_files(OBJECTS):
        ids.update(dataset.read_table(name, columns=["objectID"], schema=SCHEMA)["objectID"].to_pylist())
    return ids


def index_and_duplicates(dataset: Dataset) -> tuple[dict[int, tuple[str, str]], dict[str, set[int]]]:
    """The index (as ``read_index``) and, per shard, the ids whose row there loses to another
    shard's row of the same id. Shards never overlap when written under the ingest lease; two
    runs at once before it existed (or a copied-in shard) could leave overlaps."""
    holders: dict[int, list[tuple[str, str]]] = {}
    for name in dataset.data_files(OBJECTS):
        table = dataset.read_table(name, columns=["objectID", "status"], schema=SCHEMA)  # another tool's file: clear
        for object_id, status in zip(table["objectID"].to_pylist(), table["status"].to_pylist(), strict=True):
            found = holders.setdefault(object_id, [])
            if not found or found[-1][0] != name:  # an id twice in one shard counts once
                found.append((name, status))
    index: dict[int, tuple[str, str]] = {}
    losers: dict[str, set[int]] = {}
    for object_id, found in holders.items():
        index[object_id] = keep_one(found) if len(found) > 1 else found[0]
        for name, _ in found:
            if name != index[object_id][0]:
                losers.setdefault(name, set()).add(object_id)
    return index, losers


def status_counts(dataset: Dataset) -> Counter:
    """Rows by status over the whole table, one per id as ``read_index`` keeps them, counted in
    Arrow and NumPy: ~16 bytes a row where the index's Python dict takes ~100, so that a summary
    after a CSV load of 480,000 rows costs a few MB (overlapping shards fall back to the index)."""
    counts: Counter[str] = Counter()
    ids = []
    for name in dataset.data_files(OBJECTS):
        table = dataset.read_table(name, columns=["objectID", "status"], schema=SCHEMA)
        for entry in pc.value_counts(table["status"]).to_pylist():
            counts[entry["values"]] += entry["counts"]
        ids.append(table["objectID"].combine_chunks())
    every = np.sort(np.concatenate([a.to_numpy(zero_copy_only=False) for a in ids])) if ids else np.array([])
    if (every[1:] == every[:-1]).any():
        return Counter(status for _, status in read_index(dataset).values())  # overlaps: keep_one decides
    return counts


def drop_rows(dataset: Dataset, name: str, ids: set[int]) -> None:
    """Rewrite a shard without these ids' rows; delete it if no row stays."""
    old = dataset.read_table(name)
    keep = old.filter(pc.invert(pc.is_in(old["objectID"], value_set=pa.array(sorted(ids), pa.int64()))))
    if keep.num_rows:
        dataset.write_table(name, keep)
    else:
        dataset.fs.rm_file(dataset.path(name))


def retryable_ids(index: dict[int, tuple[str, str]]) -> set[int]:
    """Ids whose last outcome can change if asked again."""
    return {i for i, (_, status) in index.items() if status in RETRYABLE}


#: Seconds a shard task waits for a hanging answer or a backoff once nothing else is left to send,
#: before it writes its shard and hands those ids on to a follow-up task (``dispatch``).
LATE_AFTER = 1.0


def run_shard(
    task: ShardTask,
    dataset: Dataset,
    options: LookupOptions,
    pacer: Pacer,
    late_after: float | None = None,
    progress_topic: str | None = None,
) -> dict:
    """Look up one shard's ids and write the shard; return counts for the run summary.

    With ``late_after``, the ids handed on are written ``transient`` and listed in the result's
    ``late`` (``[id, attempts, due s]``) for a follow-up task (``follow_up``); ``statuses`` counts
    only the ids that ended. With ``progress_topic``, ids are counted to the client as they end
    (``progress.report``).
    """
    if not task.replace and dataset.exists(task.name):
        return {"shard": task.name, "skipped": True, "ids": len(task.ids), "statuses": {}, "requests": 0, "errors": 0}
    with report(progress_topic) as finished:
        rows, figures = lookup_batch(
            list(task.ids),
            options,
            pacer,
            tries=list(task.tries) if task.tries is not None else None,
            finished=lambda k: finished(1),
            late_after=late_after,
        )
    table = rows_to_table(rows)
    if task.replace and dataset.exists(task.name):
        old = dataset.read_table(task.name)
        keep = pc.invert(pc.is_in(old["objectID"], value_set=pa.array(task.ids, pa.int64())))
        table = pa.concat_tables([old.filter(keep).cast(table.schema), table]).sort_by("objectID")
    dataset.write_table(task.name, table)
    late = [[r["objectID"], r["attempts"], round(r[LATE], 3)] for r in rows if LATE in r]
    return {
        "shard": task.name,
        "skipped": False,
        "statuses": dict(Counter(r["status"] for r in rows if LATE not in r)),
        "late": late,
        "follow_up": task.tries is not None,
        "requests": figures.requests,
        "peak_in_flight": figures.peak_in_flight,
        "busy_s": figures.busy_s,
        "errors": sum(1 for r in rows if r.get(UNEXPECTED)),  # ids whose handling raised: logged, counted
    }


def follow_up(task: ShardTask, result: dict) -> tuple[float, ShardTask] | None:
    """The follow-up task of a shard task's late ids, and in how many seconds it may start (when the
    last of their backoffs ends); None if none is late. It replaces those ids' rows in the same shard.

    >>> follow_up(ShardTask("objects/part-0000001.parquet", (1, 2, 3)), {"late": [[2, 2, 1.5], [3, 1, 0.0]]})
    (1.5, ShardTask(name='objects/part-0000001.parquet', ids=(2, 3), replace=True, tries=(2, 1)))
    >>> follow_up(ShardTask("objects/part-0000001.parquet", (1,)), {"late": []}) is None
    True
    """
    late = result.get("late") or []
    if not late:
        return None
    ids, tries = tuple(i for i, *_ in late), tuple(attempts for _, attempts, _ in late)
    return max(due for *_, due in late), ShardTask(task.name, ids, replace=True, tries=tries)


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
    table = dataset.read_table(relative, columns=["objectID"], schema=pa.schema([("objectID", pa.int64())]))
    try:
        return checked_ids(table["objectID"].to_pylist())
    except ValueError as exc:
        raise DatasetError(
            f"{dataset.url_of(relative)} is not a candidates file metdata wrote ({exc}): "
            f"run 'metdata ids --target {target} --data {dataset.url}' again"
        ) from exc


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
    table = dataset.read_table(LISTING, columns=["objectID"], schema=pa.schema([("objectID", pa.int64())]))
    ids = table["objectID"].combine_chunks()
    bounds = pc.min_max(ids).as_py()
    if ids.null_count or (len(ids) and not 1 <= bounds["min"] <= bounds["max"] <= MAX_OBJECT_ID):
        read_listing(dataset)  # raises with the message of the id at fault
    return ids


def read_listing(dataset: Dataset) -> list[int]:
    """The snapshotted ids.

    Raises:
        DatasetError: the listing file is not one ``metdata ids`` wrote (bad ids or columns).
    """
    table = dataset.read_table(LISTING, columns=["objectID"], schema=pa.schema([("objectID", pa.int64())]))
    try:
        return checked_ids(table["objectID"].to_pylist())
    except ValueError as exc:
        raise DatasetError(
            f"{dataset.url_of(LISTING)} is not a listing metdata took ({exc}): "
            f"take it again with 'metdata ids --data {dataset.url}'"
        ) from exc


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


def summary(
    dataset: Dataset,
    api: str,
    rate: float,
    run_statuses: Counter,
    requests: int,
    duration: float,
    pacer: dict,
    failures: list[str],
) -> dict:
    """An ingestion run's summary: rows by status over the whole table, then this run's ids by
    status, requests, blocks (``pacer``: the pacer's figures per host), duration and rate
    achieved against the configured ``rate``, and its failed shard tasks."""
    table_statuses = status_counts(dataset)
    return {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "dataset": dataset.url,
        "api": api,
        "rows_by_status": dict(sorted(table_statuses.items())),
        "rows": sum(table_statuses.values()),
        "this_run": {
            "ids_looked_up": sum(run_statuses.values()),
            "by_status": dict(sorted(run_statuses.items())),
            "requests": requests,
            "blocks": sum(int(h["blocks"]) for h in pacer.values()),
            "duration_s": round(duration, 2),
            "achieved_rate": round(requests / duration, 3) if duration else None,
            "configured_rate": rate,
            "failed_shard_tasks": failures,
        },
    }
