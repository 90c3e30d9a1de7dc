"""What an images run does, and what it did: the plan (selection, the store made or grown, the
chunks still to do) and the run's summary. Pure decisions over the dataset; ``jobs/images.py``
only wires them to the cluster.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from metdata.core.statuses import Status
from metdata.core.targets import resolve
from metdata.images import images
from metdata.images.selection import select
from metdata.net.pacing import PaceConfig, check_rate
from metdata.storage import layout
from metdata.storage.dataset import Dataset, DatasetError
from metdata.storage.imagestore import ImageStore, StoreMismatch, prepare_store
from metdata.storage.objects import objects_table


@dataclass(frozen=True)
class Plan:
    """The chunk tasks of a run, and how many objects the selection holds."""

    tasks: list[images.ChunkTask]
    selected: int


def plan(
    dataset: Dataset,
    options: images.ImageOptions,
    target: str | None = None,
    where: str | None = None,
    retry_failed: bool = False,
    from_originals: str | None = None,
) -> Plan:
    """Select the objects, create (or check, or grow) the store, and list the chunks to do.

    With ``from_originals`` (a store made with ``--keep-originals``), the bytes come from
    that store's status shards instead of the network: another size without downloading.

    Raises:
        DatasetError, SelectionError, StoreMismatch: bad root, selection or store; nothing changed.
    """
    label_columns = resolve(target).columns if target else []
    columns = None if where else ["objectID", "status", "isPublicDomain", options.url_field, *label_columns]
    selected = select(objects_table(dataset, columns), options.url_field, target, where)
    ids = selected["objectID"].to_pylist()
    check_unique(dataset, ids)
    urls = image_urls(selected, options.url_field)
    if from_originals:
        urls = kept_sources(dataset, options, from_originals, ids)
    url_of = dict(zip(ids, urls, strict=True))
    slots = prepare_store(dataset, options, ids, {"target": target, "where": where})
    done = ImageStore.open(dataset, options.store).done_chunks()
    tasks = images.plan_chunks(slots, [url_of[i] for i in slots], options.chunk, done, retry_failed)
    return Plan(tasks, len(ids))


def check_unique(dataset: Dataset, ids: list[int]) -> None:
    """One row per object, or the store would hold an object twice.

    Raises:
        DatasetError: naming some ids with rows in two shards, and the fix.
    """
    if len(set(ids)) == len(ids):
        return
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    raise DatasetError(
        f"{len(twice)} objects have rows in two shards of {dataset.url_of(layout.OBJECTS)} (e.g. {twice[:5]}), "
        "left by two ingests at once: run 'metdata ingest' on this root once (it keeps one row per id), then rerun"
    )


def image_urls(selected, url_field: str) -> list[str | None]:
    """Each selected object's image URL: its record's, or None (looked up first) for a row without a record."""
    return [
        u if s == Status.OK else None
        for u, s in zip(selected[url_field].to_pylist(), selected["status"].to_pylist(), strict=True)
    ]


def kept_sources(dataset: Dataset, options: images.ImageOptions, source_store: str, ids: list[int]) -> list[str]:
    """For each id, ``kept:<status shard>`` of the source store that holds its original.

    Raises:
        StoreMismatch: the source is the store being built, or holds no status shard.
    """
    source = layout.status_folder(source_store)
    if source == layout.status_folder(options.store):
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


@dataclass
class Tally:
    """A run's chunk results, added up as they arrive."""

    statuses: Counter = field(default_factory=Counter)
    downloaded: int = 0
    bugs: int = 0
    requests: int = 0
    peak: int = 0
    busy: float = 0.0
    follow_ups: int = 0

    def add(self, result: dict) -> None:
        self.statuses.update(result["statuses"])
        self.follow_ups += result.get("follow_up", False)
        self.downloaded += result["bytes"]
        self.bugs += result.get("errors", 0)
        self.requests += result.get("requests", 0)
        self.peak = max(self.peak, result.get("peak_in_flight", 0))
        self.busy += result.get("busy_s", 0.0)


def summary(
    dataset: Dataset,
    options: images.ImageOptions,
    pace: PaceConfig,
    planned: Plan,
    tally: Tally,
    duration: float,
    failures: list[str],
    unexpected: int,
) -> dict:
    """The run's summary: every slot of the store by status, and what this run did."""
    done = ImageStore.open(dataset, options.store).done_chunks()
    slots_by_status = Counter(s for slots in done.values() for s in slots)
    images_done = sum(tally.statuses.values())
    return {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "store": dataset.url_of(options.store),
        "selected": planned.selected,
        "slots_by_status": dict(sorted(slots_by_status.items())),
        "this_run": {
            "images": images_done,
            "by_status": dict(sorted(tally.statuses.items())),
            "bytes_downloaded": tally.downloaded,
            "requests": tally.requests,
            "duration_s": round(duration, 2),
            "images_per_s": round(images_done / duration, 2) if duration else None,
            "achieved_rate": round(tally.requests / duration, 3) if duration else None,
            "configured_rate": pace.rate,
            "in_flight": {"mean": round(tally.busy / duration, 1) if duration else 0, "peak_per_task": tally.peak},
            "follow_up_tasks": tally.follow_ups,
            "failed_chunk_tasks": failures,
            "unexpected_errors": unexpected,
        },
    }
