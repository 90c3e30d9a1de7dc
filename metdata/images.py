"""The images stage: selected objects to one chunked Zarr array, one task per chunk.

The store (``images.zarr``) is created once, up front, with the selection's object ids in
order; each task owns one chunk of slots: it downloads those images (within the image host's
cluster-wide budget, from allowed hosts only, bytes capped, no redirects elsewhere), decodes
and resizes them (``imaging``), writes its chunk of ``images`` and ``valid``, and last writes
the chunk's status shard, which marks the chunk done. A rerun writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin, urlsplit

import numpy as np
import pyarrow as pa
import requests
import zarr

from metdata import imaging
from metdata.api import DEFAULT_API, RETRYABLE
from metdata.dataset import Dataset
from metdata.errors import UserError
from metdata.lookup import LookupOptions, Pacer, lookup_one, new_session
from metdata.pacing import retrying

log = logging.getLogger(__name__)

MET_IMAGE_HOST = "images.metmuseum.org"
STATUSES = (
    "ok",
    "no_image",
    "not_found",
    "bad_image",
    "too_large",
    "blocked",
    "transient",
    "failed",
)
STATUS_SCHEMA = pa.schema(
    [
        ("objectID", pa.int64()),
        ("slot", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("url", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("attempts", pa.int32()),
        ("fetched_at", pa.timestamp("ms", tz="UTC")),
        ("original", pa.binary()),
    ]
)


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
    """

    api: str = DEFAULT_API
    size: int = 150
    resize: str = "squash"
    rendition: str = "web-large"
    chunk: int = 64
    allowed_hosts: frozenset[str] = frozenset({MET_IMAGE_HOST})
    max_bytes: int = 50 << 20
    keep_originals: bool = False
    threads: int = 4
    timeout: float = 30.0
    max_attempts: int = 5
    backoff: float = 2.0
    store: str = "images.zarr"

    @property
    def status_folder(self) -> str:
        """``images.zarr`` keeps its status shards in ``images/``."""
        return self.store.removesuffix(".zarr")

    @property
    def url_field(self) -> str:
        return "primaryImage" if self.rendition == "original" else "primaryImageSmall"

    @property
    def lookup(self) -> LookupOptions:
        return LookupOptions(
            api=self.api, threads=1, timeout=self.timeout, max_attempts=self.max_attempts, backoff=self.backoff
        )


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of slots: ``urls[i]`` is None when the URL must first be looked up (CSV rows).
    ``redo`` lists the slots to fetch again (None: all of them)."""

    index: int
    start: int
    object_ids: tuple[int, ...]
    urls: tuple[str | None, ...]
    redo: tuple[int, ...] | None = None

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


def budget_key(url: str) -> str:
    """The image host's budget is separate from the API's, even on one address (the emulator).

    >>> budget_key("https://images.metmuseum.org/CRDImages/ep/web-large/DP1.jpg")
    'images@images.metmuseum.org'
    """
    return f"images@{urlsplit(url).netloc}"


def download(session: requests.Session, url: str, options: ImageOptions, pacer: Pacer) -> Fetched:
    """Download one image within the budget; retry what can succeed later; never leave the
    allowed hosts; stop reading past ``max_bytes``."""
    result, attempts = retrying(
        lambda: _download_once(session, url, options, pacer),
        lambda fetched: fetched.status,
        options.max_attempts,
        options.backoff,
        pacer,
        budget_key(url),
    )
    result.attempts = attempts
    return result


def _download_once(session: requests.Session, url: str, options: ImageOptions, pacer: Pacer) -> Fetched:
    for _hop in range(4):
        host = urlsplit(url).netloc
        if host not in options.allowed_hosts:
            return Fetched(
                "failed",
                f"host {host!r} is not allowed (allowed: {sorted(options.allowed_hosts)})",
                url,
            )
        pacer.wait(budget_key(url))
        try:
            with session.get(url, timeout=options.timeout, stream=True, allow_redirects=False) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                ctype = response.headers.get("Content-Type", "")
                if response.status_code >= 500:
                    return Fetched("transient", f"HTTP {response.status_code}", url)
                body = bytearray()
                for part in response.iter_content(1 << 16):
                    body += part
                    if len(body) > options.max_bytes:
                        return Fetched("too_large", f"more than {options.max_bytes:,} bytes", url)
        except (requests.ConnectionError, requests.Timeout) as exc:
            return Fetched("transient", f"{type(exc).__name__}: {exc}"[:300], url)
        data = bytes(body)
        if response.status_code in (200, 403) and ctype.startswith("text/html") and b"incapsula" in data[:4096].lower():
            return Fetched("blocked", f"HTTP {response.status_code} bot-protection page", url)
        if response.status_code == 404:
            return Fetched("not_found", "HTTP 404", url)
        if response.status_code != 200:
            return Fetched("failed", f"HTTP {response.status_code}", url)
        return Fetched("ok", url=url, data=data)
    return Fetched("failed", "too many redirects", url)


def process(fetched: Fetched, options: ImageOptions) -> Fetched:
    """Decode and resize a downloaded image; a bad or huge one becomes its status."""
    if fetched.status != "ok":
        return fetched
    try:
        rgb, width, height = imaging.decode(fetched.data, options.size)
    except imaging.TooLarge as exc:
        return replace(fetched, status="too_large", error=str(exc))
    except imaging.BadImage as exc:
        return replace(fetched, status="bad_image", error=str(exc))
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


def fetch_slot(
    session: requests.Session,
    object_id: int,
    url: str | None,
    options: ImageOptions,
    pacer: Pacer,
    kept: dict[int, tuple[str, bytes]] | None = None,
) -> Fetched:
    """Everything for one slot: look the URL up if unknown (CSV rows), download, decode.

    A ``kept:`` slot takes the bytes another store kept (``--keep-originals``): no download.
    """
    if url is not None and url.startswith(KEPT):
        if kept is None or object_id not in kept:
            return Fetched("no_image", f"no original was kept for it in {url.removeprefix(KEPT)}")
        original_url, data = kept[object_id]
        return process(Fetched("ok", url=original_url, data=data), options)
    if url is None:
        row = lookup_one(session, object_id, options.lookup, pacer)
        if row["status"] != "ok":
            return Fetched(row["status"] if row["status"] in STATUSES else "failed", f"lookup: {row['error']}")
        url = row[options.url_field] or None
    if not url:
        return Fetched("no_image", "the record has no image URL")
    return process(download(session, url, options, pacer), options)


def open_arrays(dataset: Dataset, options: ImageOptions, mode: str = "r+") -> zarr.Group:
    return dataset.open_zarr(options.store, mode)


def run_chunk(task: ChunkTask, dataset: Dataset, options: ImageOptions, pacer: Pacer) -> dict:
    """Fetch one chunk's images and write the chunk, then its status shard (the done mark)."""
    shard = f"{options.status_folder}/{task.name}"
    if task.redo is None and dataset.exists(shard):
        return {"chunk": task.index, "skipped": True, "statuses": {}, "bytes": 0}
    pacer = pacer.bind()
    n = len(task.object_ids)
    group = open_arrays(dataset, options)
    if task.redo is None:
        redo = list(range(n))
        pixels = np.zeros((n, options.size, options.size, 3), np.uint8)
        valid = np.zeros(n, bool)
        rows: list[dict] = [{}] * n
    else:  # keep what succeeded; fetch again only the retryable slots
        redo = list(task.redo)
        pixels = group["images"][task.start : task.start + n]
        valid = group["valid"][task.start : task.start + n]
        rows = dataset.read_table(shard).to_pylist()
    sources = {task.urls[i].removeprefix(KEPT) for i in redo if (task.urls[i] or "").startswith(KEPT)}
    kept = load_kept(dataset, sources) if sources else None
    with new_session(options.threads) as session, ThreadPoolExecutor(options.threads) as pool:
        results = list(
            pool.map(
                lambda i: fetch_slot(session, task.object_ids[i], task.urls[i], options, pacer, kept),
                redo,
            )
        )
    now = dt.datetime.now(dt.UTC)
    for i, result in zip(redo, results, strict=True):
        valid[i] = result.status == "ok"
        pixels[i] = result.pixels if result.pixels is not None else 0
        rows[i] = {
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
    group["images"][task.start : task.start + n] = pixels
    group["valid"][task.start : task.start + n] = valid
    dataset.write_table(shard, pa.Table.from_pylist(rows, schema=STATUS_SCHEMA))
    statuses: dict[str, int] = {}
    for i in redo:
        statuses[rows[i]["status"]] = statuses.get(rows[i]["status"], 0) + 1
    return {
        "chunk": task.index,
        "skipped": False,
        "statuses": statuses,
        "bytes": sum(rows[i]["bytes"] or 0 for i in redo),
    }


class StoreMismatch(UserError):
    """An existing store was made for another size or selection; it is left untouched."""


def prepare_store(dataset: Dataset, options: ImageOptions, object_ids: list[int], about: dict) -> None:
    """Create the store for these ids, or check that the existing one is the same.

    A store whose creation was interrupted (no ``complete`` attribute) is made again.

    Raises:
        StoreMismatch: the existing store has another size, mode, rendition or selection.
    """
    wanted = {"size": options.size, "resize": options.resize, "rendition": options.rendition, "chunk": options.chunk}
    if dataset.exists(f"{options.store}/zarr.json"):
        group = open_arrays(dataset, options, mode="r")
        attrs = dict(group.attrs)
        if attrs.get("complete"):
            found = {k: attrs.get(k) for k in wanted}
            if found != wanted:
                raise StoreMismatch(
                    f"{dataset.url}/{options.store} was made with {found}, not {wanted}; it is left as it is. "
                    "Use another --store (e.g. images-224.zarr) or delete it to rebuild"
                )
            if not np.array_equal(group["object_id"][:], np.asarray(object_ids, np.int64)):
                raise StoreMismatch(
                    f"{dataset.url}/{options.store} holds another selection ({group['object_id'].shape[0]} "
                    f"objects, not {len(object_ids)}); it is left as it is. Use another --store for this one"
                )
            return
        log.warning("%s was left half-created; making it again", options.store)
    for folder in (options.store, options.status_folder):
        if dataset.fs.exists(dataset.path(folder)):
            dataset.fs.rm(dataset.path(folder), recursive=True)
    n, size, chunk = len(object_ids), options.size, options.chunk
    group = open_arrays(dataset, options, mode="w")
    group.create_array(
        "images",
        shape=(n, size, size, 3),
        chunks=(chunk, size, size, 3),
        dtype="uint8",
        fill_value=0,
        dimension_names=("slot", "y", "x", "channel"),
    )
    group.create_array("object_id", shape=(n,), chunks=(chunk,), dtype="int64", fill_value=0, dimension_names=("slot",))
    group.create_array("valid", shape=(n,), chunks=(chunk,), dtype="bool", fill_value=False, dimension_names=("slot",))
    group["object_id"][:] = np.asarray(object_ids, np.int64)
    group.attrs.update(
        {
            **wanted,
            "color_order": "RGB",
            "layout": "NHWC",
            **about,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "complete": True,
        }
    )


def read_statuses(dataset: Dataset, options: ImageOptions) -> dict[int, list[str]]:
    """Chunk index -> the status of each of its slots, for the chunks that are done."""
    done = {}
    for name in dataset.data_files(options.status_folder):
        index = int(name.rsplit("-", 1)[-1].split(".")[0])
        done[index] = dataset.read_table(name, columns=["status"])["status"].to_pylist()
    return done


def plan_chunks(
    object_ids: list[int], urls: list[str | None], chunk: int, done: dict[int, list[str]], retry_failed: bool
) -> list[ChunkTask]:
    """Chunk tasks for the chunks not done yet, and (``retry_failed``) the retryable slots of
    done ones.

    >>> [(t.index, t.redo) for t in plan_chunks([1, 2, 3], ["a", "b", None], 2, {0: ["ok", "blocked"]}, True)]
    [(0, (1,)), (1, None)]
    """
    tasks = []
    for index, start in enumerate(range(0, len(object_ids), chunk)):
        ids, chunk_urls = (
            tuple(object_ids[start : start + chunk]),
            tuple(urls[start : start + chunk]),
        )
        if index not in done:
            tasks.append(ChunkTask(index, start, ids, chunk_urls))
        elif retry_failed:
            redo = tuple(i for i, status in enumerate(done[index]) if status in RETRYABLE)
            if redo:
                tasks.append(ChunkTask(index, start, ids, chunk_urls, redo))
    return tasks
