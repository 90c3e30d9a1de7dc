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
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metdata.acquire.listing import (
    check_candidates,
    read_candidates,
    read_listing,
    read_listing_meta,
    refresh_ids,
    write_listing,
)
from metdata.acquire.lookup import LATE, UNEXPECTED, LookupOptions, fetch_listing, lookup_batch
from metdata.acquire.opencsv import MAX_CSV_BYTES
from metdata.core.progress import report
from metdata.core.records import SCHEMA, rows_to_table
from metdata.core.statuses import RETRYABLE
from metdata.net.pacing import LocalPacer, PaceConfig, Pacer
from metdata.storage.dataset import Dataset
from metdata.storage.layout import (
    LISTING,
    OBJECTS,
    object_shard,
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


@dataclass(frozen=True)
class IngestOptions:
    """What ``metdata ingest`` was asked to do."""

    lookup: LookupOptions = field(default_factory=LookupOptions)
    pace: PaceConfig = field(default_factory=PaceConfig)
    shard_size: int = 1000
    retry_failed: bool = False
    since: str | None = None
    from_csv: str | None = None
    csv_storage_options: dict = field(default_factory=dict)
    #: with ``since``: refresh only this target's candidates (the listing ``metdata ids --target`` took)
    target: str | None = None
    csv_max_bytes: int = MAX_CSV_BYTES
    #: seconds a shard task waits on its tail before handing it to a follow-up task (None: wait for every answer)
    late_after: float | None = LATE_AFTER


@dataclass(frozen=True)
class Plan:
    """The shard tasks of one run, and what they cover."""

    tasks: list[ShardTask]
    listed: int
    with_rows: int


def plan(dataset: Dataset, options: IngestOptions) -> Plan:
    """Decide the run's shard tasks. Needs no cluster, so bad input fails before one starts.

    Takes the listing snapshot if there is none; with ``since``, fetches the updated ids (with
    ``target``, only those among the target's candidates, saved by ``metdata ids --target``).
    Ids found in two shards (two runs at once, before the lease) keep one row (``keep_one``);
    new ids go into new shards only, so shards never overlap, whatever ``shard_size`` each run had.

    Raises:
        DatasetError, ListingError: a bad root or API (nothing written).
    """
    pacer = LocalPacer(options.pace)
    candidates = None
    if options.target is not None:  # before any request: the candidates must be there
        check_candidates(read_listing_meta(dataset), options.target, dataset.url)
        candidates = read_candidates(dataset, options.target)
    if not dataset.exists(LISTING):
        write_listing(dataset, fetch_listing(options.lookup, pacer), {})
    listed = read_listing(dataset)
    index, overlaps = index_and_duplicates(dataset)
    for name, ids in sorted(overlaps.items()):  # left by two runs at once: keep one row per id
        log.warning("%d ids of %s also have a row in another shard: dropping them here", len(ids), name)
        drop_rows(dataset, name, ids)
    replace: set[int] = set()
    if options.retry_failed:
        replace |= retryable_ids(index)
    new = [i for i in listed if i not in index]
    if options.since:
        updated = fetch_listing(options.lookup, pacer, metadata_date=options.since)
        if candidates is not None:  # the museum's changes, only among the target's candidates
            updated = refresh_ids(updated, candidates)
        replace |= {i for i in updated if i in index}
        fresh = sorted(set(updated) - set(index) - set(new))
        if fresh:
            listed = sorted(set(listed) | set(fresh))
            write_listing(dataset, listed, {"since": options.since}, previous=read_listing_meta(dataset))
        new += fresh
    tasks = plan_replacements(replace, index) + plan_new_shards(new, options.shard_size)
    log.info(
        "%d ids listed, %d with rows; %d new ids and %d rows to replace in %d shard tasks",
        len(listed),
        len(index),
        len(new),
        len(replace),
        len(tasks),
    )
    return Plan(tasks, len(listed), len(index))


@dataclass
class Tally:
    """A run's shard results, added up as they arrive."""

    statuses: Counter = field(default_factory=Counter)
    requests: int = 0
    bugs: int = 0
    peak: int = 0
    busy: float = 0.0
    follow_ups: int = 0

    def add(self, result: dict) -> None:
        self.statuses.update(result["statuses"])
        self.follow_ups += result.get("follow_up", False)
        self.requests += result["requests"]
        self.bugs += result.get("errors", 0)
        self.peak = max(self.peak, result.get("peak_in_flight", 0))
        self.busy += result.get("busy_s", 0.0)


def summary(
    dataset: Dataset,
    options: IngestOptions,
    tally: Tally,
    duration: float,
    pacer: dict,
    failures: list[str],
    tasks: int,
    unexpected: int | None = None,
) -> dict:
    """An ingestion run's summary: rows by status over the whole table, then this run's ids by
    status, requests, blocks (``pacer``: the pacer's figures per host), duration and rate
    achieved against the configured rate, its failed shard tasks and, when ``tasks`` ran, the ids
    that met an unexpected error (``unexpected``), their requests in flight and follow-ups."""
    table_statuses = status_counts(dataset)
    this_run = {
        "ids_looked_up": sum(tally.statuses.values()),
        "by_status": dict(sorted(tally.statuses.items())),
        "requests": tally.requests,
        "blocks": sum(int(h["blocks"]) for h in pacer.values()),
        "duration_s": round(duration, 2),
        "achieved_rate": round(tally.requests / duration, 3) if duration else None,
        "configured_rate": options.pace.rate,
        "failed_shard_tasks": failures,
    }
    if tasks:
        this_run["unexpected_errors"] = unexpected or 0
        busy = round(tally.busy / duration, 1) if duration else 0
        this_run["in_flight"] = {"mean": busy, "peak_per_task": tally.peak, "tasks": tasks}
        this_run["follow_up_tasks"] = tally.follow_ups
    return {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "dataset": dataset.url,
        "api": options.lookup.api,
        "rows_by_status": dict(sorted(table_statuses.items())),
        "rows": sum(table_statuses.values()),
        "this_run": this_run,
    }
