"""The ingestion job: the id listing, then every id to a Parquet row, on a Dask cluster.

Wiring only: the listing snapshot is ``metdata.acquire.listing``'s, which shards to (re)write
and the summary ``metdata.acquire.ingest``'s, each shard's work ``metdata.acquire.ingest.run_shard``,
a CSV load ``metdata.acquire.csvload``'s; the shared budget is the scheduler's pacer. The
root's ingest lease is held around each call that writes (re-entrant, so the CLI holds it from
the plan to the summary with ``writing``).
"""

from __future__ import annotations

import logging
import time

from distributed import Client

from metdata.acquire import csvload, ingest, listing
from metdata.acquire.ingest import IngestOptions, Plan
from metdata.acquire.lookup import LookupOptions
from metdata.core.searchquery import Query
from metdata.core.statuses import Status
from metdata.errors import UserError
from metdata.jobs.tasks import install_pacer, report_unexpected, run_tasks, save_summary
from metdata.net.pacing import PaceConfig
from metdata.storage import layout, lock
from metdata.storage.dataset import Dataset

log = logging.getLogger(__name__)

__all__ = ["IngestOptions", "Plan", "ShardsFailed", "load_csv", "plan", "run", "take_listing", "take_search", "writing"]


class ShardsFailed(UserError):
    """Some shard tasks raised; their ids keep no row until a rerun."""


def writing(dataset: Dataset):
    """Hold the ingest lease of ``dataset`` for a block (around ``plan`` and ``run``, so that no
    other run writes between them).

    Raises:
        LockHeld: another ingest writes this root (the message names it).
    """
    return lock.hold(dataset, layout.lock_file(layout.OBJECTS), "metdata ingest")


def take_listing(
    dataset: Dataset,
    lookup: LookupOptions,
    pace: PaceConfig,
    department_ids: str | None = None,
    metadata_date: str | None = None,
) -> list[int]:
    """The listing snapshot (``listing.take_listing``), under the lease."""
    with writing(dataset):
        return listing.take_listing(dataset, lookup, pace, department_ids, metadata_date)


def take_search(
    dataset: Dataset,
    lookup: LookupOptions,
    pace: PaceConfig,
    queries: list[Query],
    target: str | None = None,
    add: bool = False,
) -> tuple[list[int], dict]:
    """The search's snapshot (``listing.take_search``), under the lease."""
    with writing(dataset):
        return listing.take_search(dataset, lookup, pace, queries, target, add)


def plan(dataset: Dataset, options: IngestOptions) -> Plan:
    """The run's shard tasks (``ingest.plan``), under the lease. Needs no cluster.

    Raises:
        DatasetError, ListingError: a bad root or API (nothing written).
        LockHeld: another ingest writes this root.
    """
    with writing(dataset):
        return ingest.plan(dataset, options)


def run(client: Client, dataset: Dataset, options: IngestOptions, planned: Plan | None = None) -> dict:
    """Ingest: run the planned shard tasks on the cluster within one budget, then summarise.

    Raises:
        DatasetError, ListingError: bad root or API (nothing written).
        ShardsFailed: some shards raised; rerunning retries exactly those.
        KeyboardInterrupt: after cancelling; finished shards stay, a rerun resumes.
    """
    with writing(dataset):
        started = time.monotonic()
        tasks = (planned or ingest.plan(dataset, options)).tasks
        tally, failures, stats = ingest.Tally(), [], {}
        if tasks:  # nothing to look up: no cluster needed
            fitted = ingest.fit_tasks(tasks, options.pace.rate, sum(client.nthreads().values()), options.shard_size)
            if len(fitted) != len(tasks):
                log.info("%d shard tasks cut to %d (at most a minute of budget each)", len(tasks), len(fitted))
            tasks = fitted
            pacer = install_pacer(client, options.pace)
            for result in run_tasks(
                client,
                ingest.run_shard,
                tasks,
                label="ids looked up",
                size=lambda t: len(t.ids) if t.tries is None else 0,  # a follow-up's ids are in its first task's
                name=lambda t: t.name.rsplit("/", 1)[-1] + ("" if t.tries is None else " follow-up"),
                failures=failures,
                follow_up=ingest.follow_up,
                finished=lambda result: result["ids"] if result["skipped"] else sum(result["statuses"].values()),
                dataset=dataset,
                options=options.lookup,
                pacer=pacer,
                late_after=options.late_after,
            ):
                tally.add(result)
            stats = pacer.stats()
        duration = time.monotonic() - started
        unexpected = report_unexpected(tally.bugs, "ids") if tasks else None
        summary = ingest.summary(dataset, options, tally, duration, stats, failures, len(tasks), unexpected)
        _save_summary(dataset, summary, failures)
        return summary


def load_csv(dataset: Dataset, options: IngestOptions) -> dict:
    """Load MetObjects.csv rows (status ``csv``) for every id that has no row yet, all or nothing
    (``csvload.load``), under the lease; no cluster needed.

    Raises:
        DatasetError, CsvError: a bad root, or a source that is missing, unreachable, too large,
            not MetObjects.csv, or cut.
    """
    with writing(dataset):
        started = time.monotonic()
        record, added = csvload.load(
            dataset, options.from_csv, options.csv_storage_options, options.csv_max_bytes, options.shard_size
        )
        tally = ingest.Tally()
        tally.statuses[Status.CSV] += len(added)
        summary = ingest.summary(dataset, options, tally, time.monotonic() - started, {}, [], 0)
        summary["this_run"]["csv"] = record
        _save_summary(dataset, summary, [])
        return summary


def _save_summary(dataset: Dataset, summary: dict, failures: list[str]) -> None:
    """Write the summary (the root's and this run's); raise for failed shards.

    Raises:
        ShardsFailed: some shards raised (also naming an unwritten summary).
        DatasetError: the summary could not be written (a full disk, ...).
    """
    stamp = summary["finished_at"].replace(":", "").replace("+0000", "Z")
    save_summary(dataset, (layout.ingest_run_summary(stamp), layout.SUMMARY), summary, failures, ShardsFailed, "shard")
