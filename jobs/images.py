"""The images job: select, create the store, run one task per chunk on Dask, summarise.

Wiring only: selection is ``metdata.images.selection``, the store is ``metdata.storage.imagestore``, each chunk's
work is ``metdata.images.images``, the image host's budget is the scheduler's pacer.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass

from distributed import Client

from metdata.core.targets import resolve
from metdata.errors import UserError
from metdata.images import images
from metdata.images.selection import select
from metdata.jobs.tasks import install_pacer, report_unexpected, run_tasks, save_summary
from metdata.net.pacing import PaceConfig, check_rate
from metdata.storage import layout, lock
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.imagestore import ImageStore, StoreMismatch, prepare_store
from metdata.storage.layout import lock_file
from metdata.storage.objects import objects_table

log = logging.getLogger(__name__)


class ChunksFailed(UserError):
    """Some chunk tasks raised; their chunks stay undone until a rerun."""


@dataclass(frozen=True)
class Plan:
    tasks: list[images.ChunkTask]
    selected: int


#: Every function that writes a store holds that store's one lease (re-entrant).
exclusive = lock.exclusive("metdata images", lambda arguments: arguments["options"].store)


def writing(dataset: Dataset, options: images.ImageOptions):
    """Hold the lease of the store ``options.store`` for a block (around ``plan`` and ``run``).

    Raises:
        LockHeld: another images run writes this store (the message names it).
    """
    return lock.hold(dataset, lock_file(options.store), "metdata images")


@exclusive
def plan(
    dataset: Dataset,
    options: images.ImageOptions,
    target: str | None = None,
    where: str | None = None,
    retry_failed: bool = False,
    from_originals: str | None = None,
) -> Plan:
    """Select the objects, create (or check) the store, and list the chunks to do.

    With ``from_originals`` (a store made with ``--keep-originals``), the bytes come from
    that store's status shards instead of the network: another size without downloading.

    A store grows when the selection gained objects (``imagestore.prepare_store``): its slots keep
    their objects and the new ones get new slots after them, so tasks follow the store's order.

    Raises:
        DatasetError, SelectionError, StoreMismatch: bad root, selection or store; nothing changed.
        LockHeld: another images run writes this store.
    """
    dataset.check_writable()
    label_columns = resolve(target).columns if target else []
    columns = None if where else ["objectID", "status", "isPublicDomain", options.url_field, *label_columns]
    selected = select(objects_table(dataset, columns), options.url_field, target, where)
    ids = selected["objectID"].to_pylist()
    if len(set(ids)) != len(ids):
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetError(
            f"{len(twice)} objects have rows in two shards of {dataset.url_of(layout.OBJECTS)} (e.g. {twice[:5]}), "
            "left by two ingests at once: run 'metdata ingest' on this root once (it keeps one row per id), then rerun"
        )
    urls = [
        u if s == "ok" else None
        for u, s in zip(selected[options.url_field].to_pylist(), selected["status"].to_pylist(), strict=True)
    ]
    if from_originals:
        urls = _kept_sources(dataset, options, from_originals, ids)
    url_of = dict(zip(ids, urls, strict=True))
    slots = prepare_store(dataset, options, ids, {"target": target, "where": where})
    done = ImageStore.open(dataset, options.store).done_chunks()
    tasks = images.plan_chunks(slots, [url_of[i] for i in slots], options.chunk, done, retry_failed)
    log.info(
        "%d objects selected, %d chunks done; %d chunk tasks to run",
        len(ids),
        len(done),
        len(tasks),
    )
    return Plan(tasks, len(ids))


def _kept_sources(dataset: Dataset, options: images.ImageOptions, source_store: str, ids: list[int]) -> list[str]:
    """For each id, ``kept:<status shard>`` of the source store that holds its original."""
    source = images.ImageOptions(store=source_store).status_folder
    if source == options.status_folder:
        raise StoreMismatch(f"--from-originals {source_store} is the store being built; give another --store")
    where = {}
    for shard in dataset.data_files(source):
        for object_id in dataset.read_table(shard, columns=["objectID"])["objectID"].to_pylist():
            where[object_id] = f"{images.KEPT}{shard}"
    if not where:
        raise StoreMismatch(f"no status shards under {dataset.url}/{source}: build {source_store} first")
    return [where.get(i, f"{images.KEPT}{source}") for i in ids]


def check_pace(planned: Plan, options: images.ImageOptions, pace: PaceConfig) -> None:
    """Refuse a rate the hosts this run will reach do not allow (``pacing.check_rate``): the image
    hosts of its URLs, and the API's when some URLs are looked up first.

    Raises:
        RateRefused: an unlimited rate or one above 80/s for the Met's hosts.
    """
    check_rate(pace.rate, images.hosts_reached(planned.tasks, options))


@exclusive
def run(client: Client | None, dataset: Dataset, options: images.ImageOptions, pace: PaceConfig, planned: Plan) -> dict:
    """Run the planned chunk tasks within the image host's budget; write and return a summary.

    Raises:
        ChunksFailed: some chunk tasks raised; a rerun does exactly those.
    """
    started = time.monotonic()
    statuses: Counter[str] = Counter()
    downloaded = bugs = requests = peak = follow_ups = 0
    busy = 0.0
    failures: list[str] = []
    if planned.tasks:
        check_pace(planned, options, pace)
        pacer = install_pacer(client, pace)
        for result in run_tasks(
            client,
            images.run_chunk,
            planned.tasks,
            label="images",
            size=lambda t: len(t.redo or t.object_ids) if t.tries is None else 0,  # a follow-up's are counted
            name=lambda t: f"chunk {t.index}" if t.tries is None else f"chunk {t.index} follow-up",
            failures=failures,
            follow_up=images.follow_up,
            finished=lambda result: sum(result["statuses"].values()),
            dataset=dataset,
            options=options,
            pacer=pacer,
        ):
            statuses.update(result["statuses"])
            follow_ups += result.get("follow_up", False)
            downloaded += result["bytes"]
            bugs += result.get("errors", 0)
            requests += result.get("requests", 0)
            peak, busy = max(peak, result.get("peak_in_flight", 0)), busy + result.get("busy_s", 0.0)
    duration = time.monotonic() - started
    done = ImageStore.open(dataset, options.store).done_chunks()
    table_statuses = Counter(s for slots in done.values() for s in slots)
    summary = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "store": dataset.url_of(options.store),
        "selected": planned.selected,
        "slots_by_status": dict(sorted(table_statuses.items())),
        "this_run": {
            "images": sum(statuses.values()),
            "by_status": dict(sorted(statuses.items())),
            "bytes_downloaded": downloaded,
            "requests": requests,
            "duration_s": round(duration, 2),
            "images_per_s": round(sum(statuses.values()) / duration, 2) if duration else None,
            "achieved_rate": round(requests / duration, 3) if duration else None,
            "configured_rate": pace.rate,
            "in_flight": {"mean": round(busy / duration, 1) if duration else 0, "peak_per_task": peak},
            "follow_up_tasks": follow_ups,
            "failed_chunk_tasks": failures,
            "unexpected_errors": report_unexpected(bugs, "images"),
        },
    }
    save_summary(dataset, (layout.store_summary(options.store),), summary, failures, ChunksFailed, "chunk")
    return summary
