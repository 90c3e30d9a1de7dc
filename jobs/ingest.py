"""The ingestion job: the id listing, then every id to a Parquet row, on a Dask cluster.

Wiring only: which shards to (re)write comes from ``metdata.acquire.ingest``, each shard's work is
``metdata.acquire.ingest.run_shard``, the shared budget is the scheduler's pacer.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from distributed import Client

from metdata.acquire import ingest
from metdata.acquire.lookup import LookupOptions, fetch_listing
from metdata.acquire.opencsv import MAX_CSV_BYTES, open_csv
from metdata.acquire.search import search_all, search_url, snapshot_record
from metdata.core.progress import Progress
from metdata.core.searchquery import Query
from metdata.errors import UserError
from metdata.jobs.tasks import install_pacer, report_unexpected, run_tasks, save_summary
from metdata.net.pacing import LocalPacer, PaceConfig
from metdata.storage import layout, lock
from metdata.storage.dataset import Dataset
from metdata.storage.layout import CSV_SOURCE, OBJECTS, SUMMARY, lock_file

log = logging.getLogger(__name__)


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
    late_after: float | None = ingest.LATE_AFTER


class ShardsFailed(UserError):
    """Some shard tasks raised; their ids keep no row until a rerun."""


#: Every function that writes ``objects/`` or the listing holds the one ingest lease (re-entrant).
exclusive = lock.exclusive("metdata ingest", lambda arguments: OBJECTS)


def writing(dataset: Dataset):
    """Hold the ingest lease of ``dataset`` for a block (around ``plan`` and ``run``, so that no
    other run writes between them).

    Raises:
        LockHeld: another ingest writes this root (the message names it).
    """
    return lock.hold(dataset, lock_file(OBJECTS), "metdata ingest")


@exclusive
def take_listing(
    dataset: Dataset,
    lookup: LookupOptions,
    pace: PaceConfig,
    department_ids: str | None = None,
    metadata_date: str | None = None,
) -> list[int]:
    """Fetch the id listing (one request, paced) and snapshot it into the dataset."""
    dataset.check_writable()
    ids = fetch_listing(lookup, LocalPacer(pace), department_ids, metadata_date)
    ingest.write_listing(dataset, ids, {"departmentIds": department_ids, "metadataDate": metadata_date})
    log.info("listing: %d ids snapshotted to %s", len(ids), dataset.path(ingest.LISTING))
    return ids


@exclusive
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
    dataset.check_writable()
    search_url(lookup.api)  # a bad --api fails before anything
    listed = dataset.exists(ingest.LISTING)
    old = ingest.read_listing(dataset) if add and listed else []  # without --add it is replaced unread
    previous = ingest.read_listing_meta(dataset) if add and listed else None
    done, requests = search_all(queries, lookup, LocalPacer(pace))
    found = set().union(*(s.ids for s in done))
    ids = ingest.merged_listing(old, found, add)
    record = snapshot_record(lookup.api, target, done, requests, len(old) if add else None)
    if previous is not None:
        record["previous"] = previous
    elif listed and not add:
        log.info("replacing the listing snapshot by the %d ids the search found", len(found))
    if target is not None:  # what a later 'ingest --since --target' refreshes
        record["candidates"] = len(ingest.write_candidates(dataset, target, found, previous))
    filters = {"search": target or [q.text for q in queries], "add": add}
    ingest.write_listing(dataset, ids, filters, search=record)
    log.info("search: %d distinct ids in %d requests; listing of %d ids", len(found), requests, len(ids))
    return ids, record


@dataclass(frozen=True)
class Plan:
    """The shard tasks of one run, and what they cover."""

    tasks: list[ingest.ShardTask]
    listed: int
    with_rows: int


@exclusive
def plan(dataset: Dataset, options: IngestOptions) -> Plan:
    """Decide the run's shard tasks. Needs no cluster, so bad input fails before one starts.

    Takes the listing snapshot if there is none; with ``since``, fetches the updated ids (with
    ``target``, only those among the target's candidates, saved by ``metdata ids --target``).

    Ids found in two shards (two runs at once, before the lease) keep one row (``ingest.keep_one``);
    new ids go into new shards only, so shards never overlap, whatever ``shard_size`` each run had.

    Raises:
        DatasetError, ListingError: a bad root or API (nothing written).
        LockHeld: another ingest writes this root.
    """
    dataset.check_writable()
    pacer = LocalPacer(options.pace)
    candidates = None
    if options.target is not None:  # before any request: the candidates must be there
        ingest.check_candidates(ingest.read_listing_meta(dataset), options.target, dataset.url)
        candidates = ingest.read_candidates(dataset, options.target)
    if not dataset.exists(ingest.LISTING):
        ingest.write_listing(dataset, fetch_listing(options.lookup, pacer), {})
    listed = ingest.read_listing(dataset)
    index, overlaps = ingest.index_and_duplicates(dataset)
    for name, ids in sorted(overlaps.items()):  # left by two runs at once: keep one row per id
        log.warning("%d ids of %s also have a row in another shard: dropping them here", len(ids), name)
        ingest.drop_rows(dataset, name, ids)
    replace: set[int] = set()
    if options.retry_failed:
        replace |= ingest.retryable_ids(index)
    new = [i for i in listed if i not in index]
    if options.since:
        updated = fetch_listing(options.lookup, pacer, metadata_date=options.since)
        if candidates is not None:  # the museum's changes, only among the target's candidates
            updated = ingest.refresh_ids(updated, candidates)
        replace |= {i for i in updated if i in index}
        fresh = sorted(set(updated) - set(index) - set(new))
        if fresh:
            listed = sorted(set(listed) | set(fresh))
            previous = ingest.read_listing_meta(dataset)
            ingest.write_listing(dataset, listed, {"since": options.since}, previous=previous)
        new += fresh
    tasks = ingest.plan_replacements(replace, index) + ingest.plan_new_shards(new, options.shard_size)
    log.info(
        "%d ids listed, %d with rows; %d new ids and %d rows to replace in %d shard tasks",
        len(listed),
        len(index),
        len(new),
        len(replace),
        len(tasks),
    )
    return Plan(tasks, len(listed), len(index))


@exclusive
def run(client: Client, dataset: Dataset, options: IngestOptions, planned: Plan | None = None) -> dict:
    """Ingest: run the planned shard tasks on the cluster within one budget, then summarise.

    Raises:
        DatasetError, ListingError: bad root or API (nothing written).
        ShardsFailed: some shards raised; rerunning retries exactly those.
        KeyboardInterrupt: after cancelling; finished shards stay, a rerun resumes.
    """
    started = time.monotonic()
    tasks = (planned or plan(dataset, options)).tasks
    if not tasks:  # nothing to look up: no cluster needed
        summary = _summary(dataset, options, Counter(), 0, time.monotonic() - started, {}, [])
        _save_summary(dataset, summary, [])
        return summary
    fitted = ingest.fit_tasks(tasks, options.pace.rate, sum(client.nthreads().values()), options.shard_size)
    if len(fitted) != len(tasks):
        log.info("%d shard tasks cut to %d (at most a minute of budget each)", len(tasks), len(fitted))
    tasks = fitted
    pacer = install_pacer(client, options.pace)
    statuses: Counter[str] = Counter()
    requests = bugs = peak = follow_ups = 0
    busy = 0.0
    failures: list[str] = []
    for result in run_tasks(
        client,
        ingest.run_shard,
        tasks,
        label="ids looked up",
        size=lambda t: len(t.ids) if t.tries is None else 0,  # a follow-up's ids are in its first task's size
        name=lambda t: t.name.rsplit("/", 1)[-1] + ("" if t.tries is None else " follow-up"),
        failures=failures,
        follow_up=ingest.follow_up,
        finished=lambda result: result["ids"] if result["skipped"] else sum(result["statuses"].values()),
        dataset=dataset,
        options=options.lookup,
        pacer=pacer,
        late_after=options.late_after,
    ):
        statuses.update(result["statuses"])
        follow_ups += result.get("follow_up", False)
        requests += result["requests"]
        bugs += result.get("errors", 0)
        peak, busy = max(peak, result.get("peak_in_flight", 0)), busy + result.get("busy_s", 0.0)
    duration = time.monotonic() - started
    summary = _summary(dataset, options, statuses, requests, duration, pacer.stats(), failures)
    summary["this_run"]["unexpected_errors"] = report_unexpected(bugs, "ids")
    summary["this_run"]["in_flight"] = {"mean": round(busy / duration, 1), "peak_per_task": peak, "tasks": len(tasks)}
    summary["this_run"]["follow_up_tasks"] = follow_ups
    _save_summary(dataset, summary, failures)
    return summary


def _summary(dataset, options: IngestOptions, statuses: Counter, requests: int, duration: float, pacer, failures):
    return ingest.summary(dataset, options.lookup.api, options.pace.rate, statuses, requests, duration, pacer, failures)


def _save_summary(dataset: Dataset, summary: dict, failures: list[str]) -> None:
    """Write the summary; raise for failed shards, or for a summary that could not be written.

    Raises:
        ShardsFailed: some shards raised (also naming an unwritten summary).
        DatasetError: the summary could not be written (a full disk, ...).
    """
    stamp = summary["finished_at"].replace(":", "").replace("+0000", "Z")
    save_summary(dataset, (layout.ingest_run_summary(stamp), SUMMARY), summary, failures, ShardsFailed, "shard")


@exclusive
def load_csv(dataset: Dataset, options: IngestOptions) -> dict:
    """Load MetObjects.csv rows (status ``csv``) for every id that has no row yet; all or nothing.

    One streaming pass over one file (local, http(s) or s3): no cluster needed. The shards are
    staged under hidden names and published only once the whole file is read and checked, then
    the listing and the source's record (``layout.CSV_SOURCE``: URL, bytes, sha256, rows) are
    written; on any failure the staged shards are deleted and the root is as it was. Rows already
    looked up through the API are richer (image URLs, measurements) and are kept.

    Raises:
        DatasetError, CsvError: a bad root, or a source that is missing, unreachable, too large,
            not MetObjects.csv, or cut.
    """
    started = time.monotonic()
    dataset.check_writable()
    if left := ingest.discard_csv_shards(dataset):  # we hold the lease: these are killed loads' leftovers
        log.info("removed %d shards staged by an earlier CSV load that did not finish", left)
    ingest.listing_with(dataset, [])  # a foreign listing fails here, before the file is read
    previous = ingest.read_listing_meta(dataset)  # a search's record is kept (ingest --since --target)
    load = uuid.uuid4().hex
    try:
        with (
            open_csv(options.from_csv, options.csv_storage_options, options.csv_max_bytes) as reader,
            Progress(reader.size or 0, "CSV bytes read") as progress,
        ):
            reader.report_bytes(progress.update)
            added = ingest.write_csv_shards(dataset, reader.batches(), options.shard_size, load)
        source = reader.source
        ingest.publish_csv_shards(dataset, load)
    except BaseException:  # a bad file, an interrupt, a full disk: nothing of this load stays
        ingest.discard_csv_shards(dataset, load)
        raise
    record = {**source.as_dict(), "new_rows": len(added), "loaded_at": dt.datetime.now(dt.UTC).isoformat()}
    listing = ingest.listing_with(dataset, added)
    ingest.write_listing(dataset, listing, {"from_csv": options.from_csv}, previous=previous)
    dataset.write_json(CSV_SOURCE, record)
    log.info(
        "%s: %d rows, %d bytes, sha256 %s; %d new rows",
        source.url,
        source.rows,
        source.bytes,
        source.sha256,
        len(added),
    )
    written = Counter({"csv": len(added)}) if added else Counter()
    summary = _summary(dataset, options, written, 0, time.monotonic() - started, {}, [])
    summary["this_run"]["csv"] = record
    _save_summary(dataset, summary, [])
    return summary
