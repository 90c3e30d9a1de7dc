"""The images stage: selected objects to one chunked Zarr array, one task per chunk.

The store (``images.zarr``) is created once, up front, with the selection's object ids in
order (``metdata.storage.store``); each task owns one chunk of slots: it downloads those images (within the image host's
cluster-wide budget, from allowed hosts only, bytes capped, no redirects elsewhere), decodes
and resizes them (``imaging``), writes its chunk of ``images`` and ``valid``, and last writes
the chunk's status shard, which marks the chunk done. A rerun writes the same bytes.

A task does not wait for its slowest images (``ImageOptions.late_after``, ``dispatch``: the
tail is handed on): slots still waiting out a backoff or a hanging answer when everything else
is done are written ``transient`` and listed in the result's ``late``; the job runs a follow-up
task of that chunk for them (``follow_up``), with their attempts so far, when their backoff ends.
Each slot keeps exactly one status row: a follow-up rewrites the rows of its slots only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import numpy as np

from metdata.acquire.lookup import UNEXPECTED, LookupOptions, lookup_batch
from metdata.core import imaging
from metdata.core.progress import report
from metdata.core.statuses import IMAGE_STATUSES, RETRYABLE, Status
from metdata.net.dispatch import Figures, paid_first
from metdata.net.fetch import Policy, fetch, judge
from metdata.net.pacing import MET_IMAGE_HOST, Pacer
from metdata.net.session import shared_pool
from metdata.storage import layout
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageOptions:
    """How images are fetched and stored.

    Attributes:
        size: the square side; resize: ``squash``, ``pad`` or ``crop``.
        rendition: ``web-large`` (primaryImageSmall) or ``original`` (primaryImage).
        chunk: slots per Zarr chunk (and per task).
        allowed_hosts: hosts images may come from (the Met's image host, the API's host).
        max_bytes: a download longer than this is ``too_large``.
        keep_originals: keep the downloaded bytes in the status shards.
        late_after: seconds a chunk task waits for a hanging answer or a backoff once nothing else is
            left to do, before it writes its chunk and hands those slots to a follow-up task (None:
            wait for every slot, as a task did before).
        lookup: how requests behave, as for ``metdata ingest`` (the API for rows whose URL is
            looked up first, downloads in flight per task, timeout, attempts, backoff).
    """

    lookup: LookupOptions = field(default_factory=LookupOptions)
    size: int = 150
    resize: str = "squash"
    rendition: str = "web-large"
    chunk: int = 64
    allowed_hosts: frozenset[str] = frozenset({MET_IMAGE_HOST})
    max_bytes: int = 50 << 20
    keep_originals: bool = False
    store: str = layout.DEFAULT_STORE
    late_after: float | None = 1.0

    @property
    def status_folder(self) -> str:
        """``images.zarr`` keeps its status shards in ``images/`` (``layout.status_folder``)."""
        return layout.status_folder(self.store)

    @property
    def url_field(self) -> str:
        return "primaryImage" if self.rendition == "original" else "primaryImageSmall"

    @property
    def policy(self) -> Policy:
        """Downloads reach only the allowed hosts, within the deadline and the byte cap."""
        hosts = frozenset(h.lower() for h in self.allowed_hosts)
        return Policy(hosts=hosts, deadline=self.lookup.timeout, max_bytes=self.max_bytes)


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of slots: ``urls[i]`` is None when the URL must first be looked up (CSV rows).
    ``redo`` lists the slots to fetch again (None: all of them); ``tries`` the attempts each of
    them already had in this run (a follow-up task's), else none."""

    index: int
    start: int
    object_ids: tuple[int, ...]
    urls: tuple[str | None, ...]
    redo: tuple[int, ...] | None = None
    tries: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}.parquet"


@dataclass
class Fetched:
    """What became of one slot."""

    status: str
    error: str = ""
    url: str | None = None
    pixels: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    data: bytes | None = field(default=None, repr=False)
    attempts: int = 0
    unexpected: bool = False  # handling it raised: a bug or an unforeseen answer, counted as an error
    late: bool = False  # handed on to a follow-up task, which may retry it after ``due`` s
    due: float = 0.0


def budget_key(url: str) -> str:
    """The image host's budget is separate from the API's, even on one address (the emulator).

    >>> budget_key("https://images.metmuseum.org/CRDImages/ep/web-large/DP1.jpg")
    'images@images.metmuseum.org'
    >>> budget_key("http://[::1")  # a malformed URL is refused before any request: any key will do
    'images@'
    """
    try:
        return f"images@{urlsplit(url).netloc}"
    except ValueError:
        return "images@"


def hosts_reached(tasks, options: ImageOptions) -> set[str]:
    """The hosts these chunk tasks will send requests to: their URLs' (redirects aside), and the
    API's when some URL is looked up first (``None``).

    >>> t = ChunkTask(0, 0, (1, 2), ("https://images.metmuseum.org/a.jpg", None))
    >>> sorted(hosts_reached([t], ImageOptions()))
    ['collectionapi.metmuseum.org', 'images.metmuseum.org']
    """
    hosts = set()
    for task in tasks:
        for i in task.redo if task.redo is not None else range(len(task.urls)):
            url = task.urls[i]
            if url is None:
                hosts.add(urlsplit(options.lookup.api).netloc)
            elif url and not url.startswith(KEPT):
                try:
                    hosts.add(urlsplit(url).netloc)
                except ValueError:  # a malformed URL is refused later, without a request
                    continue
    return hosts


#: Decodes at once per process: one per core (an original decodes to up to 48 MB of pixels).
_DECODING = threading.BoundedSemaphore(os.cpu_count() or 1)


def download_all(
    urls: list[str],
    options: ImageOptions,
    pacer: Pacer,
    tries: list[int] | None = None,
    finished: Callable[[int], None] | None = None,
) -> tuple[list[Fetched], Figures]:
    """Download and decode images at the image host's pace (``dispatch.Dispatcher``: allowed hosts
    only, one deadline per request, ``max_bytes`` counted after decompression; retries back in the
    queue). One ``Fetched`` per URL, in order; never raises for what a host or a URL does, and an
    attempt that raised becomes that slot's ``failed`` (``unexpected``) result. ``tries``: attempts
    each URL already had; ``finished(k)`` as URL ``k`` ends. A slot still hanging or backing off
    when the rest is done comes back ``late`` (``ImageOptions.late_after``)."""
    dispatcher = options.lookup.dispatcher(pacer, len(urls))
    dispatcher.late_after = options.late_after
    policy = options.policy
    with shared_pool(dispatcher.max_in_flight) as session:

        def attempt(url: str) -> tuple[str, Fetched]:
            reply = fetch(session, url, policy, wait=paid_first(dispatcher.slots, budget_key))
            answer = judge(reply)
            if answer.outcome is not Status.OK:
                return answer.outcome.value, Fetched(answer.outcome.value, answer.error, reply.url)
            with _DECODING:
                fetched = process(Fetched(Status.OK, url=reply.url, data=answer.payload), options)
            return fetched.status, fetched

        done = dispatcher.run(urls, budget_key, attempt, tries=tries, finished=finished)
    results = []
    for url, result in zip(urls, done, strict=True):
        if result.error is not None:
            log.error("downloading %s failed unexpectedly", url, exc_info=result.error)
            fetched = Fetched(
                Status.FAILED, f"{type(result.error).__name__}: {result.error}"[:500], url, unexpected=True
            )
        elif result.value is None:  # handed on while its first attempt was in flight
            fetched = Fetched(Status.TRANSIENT, "no answer yet", url)
        else:
            fetched = result.value
        if result.late:
            fetched = replace(fetched, status=Status.TRANSIENT, late=True, due=result.due)
            fetched.error = f"{fetched.error or 'no answer yet'} (pending: a follow-up task retries it)"[:500]
        fetched.attempts = result.attempts
        results.append(fetched)
    return results, dispatcher.figures


def process(fetched: Fetched, options: ImageOptions) -> Fetched:
    """Decode and resize a downloaded image; a bad or huge one becomes its status."""
    if fetched.status != Status.OK:
        return fetched
    try:
        rgb, width, height = imaging.decode(fetched.data, options.size, longer=options.resize == "pad")
    except imaging.TooLarge as exc:
        return replace(fetched, status=Status.TOO_LARGE, error=str(exc))
    except imaging.BadImage as exc:
        return replace(fetched, status=Status.BAD_IMAGE, error=str(exc))
    return replace(
        fetched,
        pixels=imaging.resize(rgb, options.size, options.resize),
        width=width,
        height=height,
    )


#: A slot whose bytes come from another store's kept originals: ``kept:<status shard>``.
KEPT = "kept:"


def load_kept(dataset: Dataset, sources: set[str]) -> dict[int, tuple[str, bytes]]:
    """objectID -> (original URL, bytes) from the status shards that kept the originals."""
    kept = {}
    for shard in sorted(sources):
        table = dataset.read_table(shard, columns=["objectID", "url", "original"])
        for object_id, url, data in zip(*(table[c].to_pylist() for c in ("objectID", "url", "original")), strict=True):
            if data is not None:
                kept[object_id] = (url, data)
    return kept


def fetch_slots(
    object_ids: list[int],
    urls: list[str | None],
    options: ImageOptions,
    pacer: Pacer,
    kept: dict[int, tuple[str, bytes]] | None = None,
    tries: list[int] | None = None,
    finished: Callable[[int], None] | None = None,
) -> tuple[list[Fetched], Figures]:
    """Everything for these slots: look up the URLs that are unknown (CSV rows), download, decode.

    A ``kept:`` slot takes the bytes another store kept (``--keep-originals``): no download.
    Never raises for one slot: whatever goes wrong becomes that slot's ``failed`` status naming
    the exception (``unexpected``, so the chunk counts it), and the traceback is logged.
    ``tries`` and ``finished`` as for ``download_all`` (``finished(k)`` for every slot that ends).
    """
    pacer = pacer.bind()
    finished = finished or (lambda k: None)
    results: list[Fetched | None] = [None] * len(object_ids)
    unknown = [k for k, url in enumerate(urls) if url is None]
    if unknown:
        rows, _ = lookup_batch([object_ids[k] for k in unknown], options.lookup, pacer)
        urls = list(urls)
        for k, row in zip(unknown, rows, strict=True):
            if row["status"] != Status.OK:
                status = row["status"] if row["status"] in IMAGE_STATUSES else Status.FAILED
                results[k] = Fetched(status, f"lookup: {row['error']}", unexpected=row.get(UNEXPECTED, False))
            else:
                urls[k] = row[options.url_field] or ""
    to_download = []
    for k, (object_id, url) in enumerate(zip(object_ids, urls, strict=True)):
        if results[k] is not None:
            finished(k)
            continue
        try:
            if url and url.startswith(KEPT):
                results[k] = _from_kept(object_id, url, options, kept)
            elif not url:
                results[k] = Fetched(Status.NO_IMAGE, "the record has no image URL")
            else:
                to_download.append(k)
        except Exception as exc:  # per-item isolation: one slot never sinks its chunk
            log.exception("image slot of object %s failed unexpectedly", object_id)
            results[k] = Fetched(Status.FAILED, f"{type(exc).__name__}: {exc}"[:500], url, unexpected=True)
        if results[k] is not None:
            finished(k)
    downloaded, figures = download_all(
        [urls[k] for k in to_download],
        options,
        pacer,
        tries=[tries[k] for k in to_download] if tries else None,
        finished=lambda j: finished(to_download[j]),
    )
    for k, fetched in zip(to_download, downloaded, strict=True):
        results[k] = fetched
    return results, figures  # type: ignore[return-value]


def _from_kept(object_id: int, url: str, options: ImageOptions, kept: dict[int, tuple[str, bytes]] | None) -> Fetched:
    if kept is None or object_id not in kept:
        return Fetched(Status.NO_IMAGE, f"no original was kept for it in {url.removeprefix(KEPT)}")
    original_url, data = kept[object_id]
    return process(Fetched(Status.OK, url=original_url, data=data), options)


def run_chunk(
    task: ChunkTask, dataset: Dataset, options: ImageOptions, pacer: Pacer, progress_topic: str | None = None
) -> dict:
    """Fetch one chunk's images and write the chunk, then its status shard (the done mark).

    The result's ``late`` lists the slots handed on (``[slot, attempts, due s, url]``) for a
    follow-up task (``follow_up``); ``statuses`` counts only the slots that ended. With
    ``progress_topic``, finished slots are counted to the client as they end (``progress.report``).
    """
    store = ImageStore.open(dataset, options.store, "r+")
    if task.redo is None and store.chunk_done(task.index):
        return {"chunk": task.index, "skipped": True, "statuses": {}, "bytes": 0, "errors": 0}
    n = len(task.object_ids)
    if task.redo is None:
        redo = list(range(n))
        pixels = np.zeros((n, options.size, options.size, 3), np.uint8)
        valid = np.zeros(n, bool)
        rows: list[dict] = [{}] * n
    else:  # keep what succeeded; fetch again only the retryable slots
        redo = list(task.redo)
        pixels, valid, rows = store.read_chunk(task.start, n, task.index)
        rows += [{}] * (n - len(rows))  # the new slots of a chunk a grown store extended
    sources = {task.urls[i].removeprefix(KEPT) for i in redo if (task.urls[i] or "").startswith(KEPT)}
    kept = load_kept(dataset, sources) if sources else None
    with report(progress_topic) as finished:
        results, figures = fetch_slots(
            [task.object_ids[i] for i in redo],
            [task.urls[i] for i in redo],
            options,
            pacer,
            kept,
            tries=list(task.tries) if task.tries is not None else None,
            finished=lambda k: finished(1),
        )
    now = dt.datetime.now(dt.UTC)
    for k, (i, result) in enumerate(zip(redo, results, strict=True)):
        try:
            valid[i], pixels[i], rows[i] = _slot_row(task, i, result, options, now)
        except Exception as exc:  # per-item isolation, as in fetch_slots
            log.exception("image slot of object %s failed unexpectedly", task.object_ids[i])
            results[k] = Fetched(Status.FAILED, f"{type(exc).__name__}: {exc}"[:500], result.url, unexpected=True)
            valid[i], pixels[i], rows[i] = _slot_row(task, i, results[k], options, now)
    store.write_chunk(task.start, task.index, pixels, valid, rows)
    statuses: dict[str, int] = {}
    late = []
    for i, result in zip(redo, results, strict=True):
        if result.late:
            late.append([i, result.attempts, round(result.due, 3), result.url])
        else:
            statuses[rows[i]["status"]] = statuses.get(rows[i]["status"], 0) + 1
    return {
        "chunk": task.index,
        "skipped": False,
        "statuses": statuses,
        "late": late,
        "follow_up": task.tries is not None,
        "bytes": sum(rows[i]["bytes"] or 0 for i in redo),
        "requests": figures.requests,
        "peak_in_flight": figures.peak_in_flight,
        "busy_s": figures.busy_s,
        "errors": sum(result.unexpected for result in results),
    }


def follow_up(task: ChunkTask, result: dict) -> tuple[float, ChunkTask] | None:
    """The follow-up task of a chunk task's late slots, and in how many seconds it may start (when
    the last of their backoffs ends); None if none is late. A late slot whose URL was looked up
    keeps it, so the follow-up does not look it up again.

    >>> t = ChunkTask(3, 192, (1, 2, 3), ("a", None, "c"))
    >>> follow_up(t, {"late": [[1, 2, 1.5, "b"], [2, 1, 0.0, "c"]]})
    (1.5, ChunkTask(index=3, start=192, object_ids=(1, 2, 3), urls=('a', 'b', 'c'), redo=(1, 2), tries=(2, 1)))
    """
    late = result.get("late") or []
    if not late:
        return None
    urls = list(task.urls)
    for i, _, _, url in late:
        if urls[i] is None and url:
            urls[i] = url
    redo, tries = tuple(i for i, *_ in late), tuple(attempts for _, attempts, *_ in late)
    return max(due for _, _, due, _ in late), replace(task, urls=tuple(urls), redo=redo, tries=tries)


def _slot_row(task: ChunkTask, i: int, result: Fetched, options: ImageOptions, now: dt.datetime) -> tuple:
    """(valid, pixels, status row) of slot ``i`` of the chunk."""
    row = {
        "objectID": task.object_ids[i],
        "slot": task.start + i,
        "status": result.status,
        "error": result.error or None,
        "url": result.url,
        "width": result.width,
        "height": result.height,
        "bytes": len(result.data) if result.data is not None else None,
        "sha256": hashlib.sha256(result.data).hexdigest() if result.data is not None else None,
        "attempts": result.attempts,
        "fetched_at": now,
        "original": result.data if options.keep_originals else None,
    }
    pixels = result.pixels if result.pixels is not None else 0
    return result.status == Status.OK, pixels, row


def plan_chunks(
    object_ids: list[int], urls: list[str | None], chunk: int, done: dict[int, list[str]], retry_failed: bool
) -> list[ChunkTask]:
    """Chunk tasks for the chunks not done yet, the new slots of a done chunk that a grown store
    extended, and (``retry_failed``) the retryable slots of done ones.

    >>> [(t.index, t.redo) for t in plan_chunks([1, 2, 3], ["a", "b", None], 2, {0: ["ok", "blocked"]}, True)]
    [(0, (1,)), (1, None)]
    >>> [(t.index, t.redo) for t in plan_chunks([1, 2, 3, 4], ["a"] * 4, 3, {0: ["ok", "blocked"]}, False)]
    [(0, (2,)), (1, None)]
    """
    tasks = []
    for index, start in enumerate(range(0, len(object_ids), chunk)):
        ids, chunk_urls = (
            tuple(object_ids[start : start + chunk]),
            tuple(urls[start : start + chunk]),
        )
        if index not in done:
            tasks.append(ChunkTask(index, start, ids, chunk_urls))
            continue
        statuses = done[index]
        redo = tuple(i for i, status in enumerate(statuses) if retry_failed and status in RETRYABLE)
        redo += tuple(range(len(statuses), len(ids)))  # slots the store grew into this chunk
        if redo:
            tasks.append(ChunkTask(index, start, ids, chunk_urls, redo))
    return tasks
