"""The image store: the one owner of ``NAME.zarr`` and its status folder ``NAME/``.

The store holds ``images``, ``object_id`` and ``valid``, one chunk of slots per images task; its
status folder (``layout.status_folder``) holds one status shard per done chunk, rows of
``STATUS_SCHEMA``. Only this module knows the arrays, their attributes, the status shards, the
fingerprint, chunk keys and a damaged chunk's message:

- the images stage makes or checks a store before any task runs (``prepare_store``: it never
  deletes what metdata did not make, ``STORE_MARK``), then each task writes a chunk and its
  status shard (``ImageStore.write_chunk``);
- explore, training, ``evaluate`` and ``serve`` open a store once (``ImageStore.open``, or
  ``ImageStore.find`` where a missing store is no error) and pass it along.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Protocol

import numpy as np
import pyarrow as pa
import zarr

from metdata.errors import UserError
from metdata.storage import layout
from metdata.storage.dataset import Dataset

log = logging.getLogger(__name__)


class StoreMismatch(UserError):
    """An existing store was made for another size or selection; it is left untouched."""


class NoStore(UserError):
    """There is no image store of that name under the root (``metdata images`` has not run)."""


class CorruptChunk(UserError):
    """A chunk of the image store cannot be decoded; the message names it and the fix."""


#: One row per slot of a done chunk, in a chunk's status shard.
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
#: The status columns readers take (not ``original``: the kept bytes can be large).
READ_COLUMNS = tuple(name for name in STATUS_SCHEMA.names if name != "original")


class StoreShape(Protocol):
    """What a store is made for (the images stage's ``ImageOptions`` is one)."""

    store: str
    size: int
    resize: str
    rendition: str
    chunk: int


class ImageStore:
    """One image store, opened once: its arrays, attributes and status shards.

    Read-side figures (``object_id``, ``valid``, ``attrs``) are read at the first use and kept:
    a reader sees the store as it was when it looked.
    """

    def __init__(self, dataset: Dataset, name: str, group: zarr.Group):
        self.dataset = dataset
        self.name = name
        self.group = group

    @classmethod
    def open(cls, dataset: Dataset, name: str = layout.DEFAULT_STORE, mode: str = "r") -> ImageStore:
        """The store ``name`` under the root.

        Raises:
            DatasetError: a bad store name, or a store whose metadata is unreadable (damaged).
            NoStore: there is no such store; the message names the command that builds it.
        """
        layout.store_paths(name)
        try:
            store = cls(dataset, name, dataset.open_zarr(name, mode))
            store.images, store.group["object_id"], store.group["valid"]  # all three, or it is no store
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
            raise NoStore(
                f"no image store {name!r} under {dataset.url}: run 'metdata images --data {dataset.url} "
                "--target ...' first (or give the right --store)"
            ) from exc
        return store

    @classmethod
    def find(cls, dataset: Dataset, name: str = layout.DEFAULT_STORE) -> ImageStore | None:
        """The store, or None when it has not been built."""
        layout.store_paths(name)
        if not dataset.exists(f"{name}/zarr.json"):
            return None
        return cls.open(dataset, name)

    @property
    def url(self) -> str:
        return self.dataset.url_of(self.name)

    @property
    def status_folder(self) -> str:
        return layout.status_folder(self.name)

    @cached_property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @cached_property
    def images(self) -> zarr.Array:
        """The ``images`` array, opened once (a lookup in the group reads its metadata)."""
        return self.group["images"]

    @property
    def size(self) -> int:
        """The side of the square images."""
        return int(self.images.shape[1])

    @property
    def chunk(self) -> int:
        """Slots per chunk."""
        return int(self.images.chunks[0])

    @property
    def resize(self) -> str:
        return str(self.attrs.get("resize", "squash"))

    @cached_property
    def object_id(self) -> np.ndarray:
        """Each slot's objectID (int64)."""
        return np.asarray(self.group["object_id"][:], np.int64)

    @cached_property
    def valid(self) -> np.ndarray:
        """Whether each slot holds an image."""
        return np.asarray(self.group["valid"][:], bool)

    def pixels(self, slots: Sequence[int]) -> np.ndarray:
        """The images of these slots (uint8, N x S x S x 3 RGB)."""
        if not len(slots):
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.asarray(self.images.get_orthogonal_selection((np.asarray(slots, dtype=np.int64),)), np.uint8)

    def ids_of(self, slots: Sequence[int]) -> np.ndarray:
        """The objectIDs of these slots, read from the store (not the kept copy)."""
        return np.asarray(self.group["object_id"].get_orthogonal_selection((np.asarray(slots, np.int64),)))

    @cached_property
    def statuses(self) -> pa.Table:
        """Every done chunk's status rows (``READ_COLUMNS``), read once."""
        return self.read_statuses(READ_COLUMNS)

    def read_statuses(self, columns: Sequence[str]) -> pa.Table:
        """Every done chunk's status rows (these columns), one table."""
        files = self.dataset.data_files(self.status_folder)
        shards = [self.dataset.read_table(f, columns=list(columns)) for f in files]
        if shards:
            return pa.concat_tables(shards)
        return pa.schema([STATUS_SCHEMA.field(c) for c in columns]).empty_table()

    def done_chunks(self) -> dict[int, list[str]]:
        """Chunk index -> the status of each of its slots, for the chunks that are done."""
        done = {}
        for name in self.dataset.data_files(self.status_folder):
            match = layout.STATUS_SHARD.fullmatch(name.rsplit("/", 1)[-1])
            if match is None:
                log.warning("%s is not a status shard: ignored", name)
                continue
            done[int(match.group(1))] = self.dataset.read_table(name, columns=["status"])["status"].to_pylist()
        return done

    @cached_property
    def digests(self) -> dict[int, str]:
        """objectID -> the SHA-256 of its image's bytes, where known (two columns read, not ``statuses``)."""
        t = self.read_statuses(["objectID", "sha256"])
        return {i: d for i, d in zip(t["objectID"].to_pylist(), t["sha256"].to_pylist(), strict=True) if d}

    @cached_property
    def fingerprint(self) -> dict:
        """What the store holds, to tell whether two stores are the same data.

        ``id`` hashes what makes the data (when the store was created, its object ids in slot
        order, its image size and resize mode), not where it lives: a root copied to S3 keeps its id.
        """
        found = {
            "created_at": self.attrs.get("created_at"),
            "objects": len(self.object_id),
            "object_ids_sha256": hashlib.sha256(self.object_id.astype("<i8").tobytes()).hexdigest(),
            "size": self.size,
            "resize": self.resize,
        }
        identity = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:12]
        return {"id": identity, "data": self.dataset.url, "store": self.name, **found}

    def chunk_path(self, chunk: int) -> str:
        """The object that holds chunk ``chunk`` of ``images``, under the root."""
        key = self.images.metadata.encode_chunk_key((chunk, 0, 0, 0))
        return f"{self.name}/{self.images.path}/{key}"

    def status_shard(self, chunk: int) -> str:
        return layout.status_shard(self.name, chunk)

    def damaged(self, chunk: int, exc: Exception) -> CorruptChunk:
        """The error for a chunk of ``images`` that does not decode: its key, the store and the fix."""
        return CorruptChunk(
            f"chunk {chunk} of the image array ({self.dataset.url_of(self.chunk_path(chunk))}) cannot be "
            f"read ({type(exc).__name__}: {exc}); the store is damaged there. Fix: delete that chunk's status "
            f"shard {self.dataset.url_of(self.status_shard(chunk))} and rerun 'metdata images' with the same "
            "options (it rebuilds the chunk), or delete the store and rebuild it"
        )

    def chunk_done(self, chunk: int) -> bool:
        return self.dataset.exists(self.status_shard(chunk))

    def read_chunk(self, start: int, n: int, chunk: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """A done chunk's pixels, validity and status rows (to redo some of its slots)."""
        rows = self.dataset.read_table(self.status_shard(chunk)).to_pylist()
        return self.images[start : start + n], self.group["valid"][start : start + n], rows

    def write_chunk(self, start: int, chunk: int, pixels: np.ndarray, valid: np.ndarray, rows: list[dict]) -> None:
        """Write a chunk's pixels and validity, then its status shard: the chunk's done mark.

        Every chunk is written whole by the task that owns it, so Zarr need not first compare it
        with the fill value (``write_empty_chunks``): that check cost ~0.15 ms per image, 40 % of
        the chunk's write.
        """
        for name, values in (("images", pixels), ("valid", valid)):
            self.group[name].with_config({"write_empty_chunks": True})[start : start + len(values)] = values
        self.dataset.write_table(self.status_shard(chunk), pa.Table.from_pylist(rows, schema=STATUS_SCHEMA))


#: Written with a store's first file: the mark of a store metdata made (and so may remake).
STORE_MARK = {"metdata": "images"}


def image_codecs() -> list:
    """The ``images`` array's compressor for a new store: Blosc-LZ4HC at level 1.

    Chosen on encode + decode + bytes (``benchmarks/zarr_chunks.py --codecs``, issue 24): level 1
    encodes x3 as fast as level 5 (about 0.35 ms per 150 px image against 1.1 ms: paid by the
    images stage on every chunk write, follow-ups included) for x1.08 the bytes, and decodes at
    x0.87-0.95 of level 5's rate, still about twice zstd's (what training's reader pays). Plain
    Blosc-LZ4 encodes faster still (0.1 ms) but stores x1.34 the bytes, which a node reading
    from S3 pays in network. Older stores keep their codec (Zarr reads it from the array's
    metadata; ``chunkio`` decodes any Blosc or zstd chunk).
    """
    return [zarr.codecs.BloscCodec(cname="lz4hc", clevel=1, shuffle="shuffle")]


def prepare_store(dataset: Dataset, options: StoreShape, object_ids: list[int], about: dict) -> list[int]:
    """Create the store for these ids, check the existing one, or grow it by new objects.

    A complete store whose selection gained objects (``ingest --retry-failed`` or ``--since``
    added rows) with the same target/where grows: its slots keep their objects and the new ones
    get new slots after them (objectID order among themselves), so slot order is objectID order
    only within each growth. A store whose creation was interrupted (``complete`` unset) is made
    again, but only if metdata started it (``STORE_MARK``) and its status folder holds only status
    shards: nothing else is deleted, ever.

    Returns:
        The store's object ids in slot order.

    Raises:
        StoreMismatch: another size, mode, rendition or chunk; another target/where; a selection
            that lost some of the store's objects; or folders that metdata did not make.
    """
    store, status = layout.store_paths(options.store)  # a plain name whose folders are its own
    wanted = {"size": options.size, "resize": options.resize, "rendition": options.rendition, "chunk": options.chunk}
    attrs = _group_attrs(dataset, store)
    if attrs is not None and attrs.get("complete"):
        found = {k: attrs.get(k) for k in wanted}
        if found != wanted:
            raise StoreMismatch(
                f"{dataset.url}/{store} was made with {found}, not {wanted}; it is left as it is. "
                "Use another --store (e.g. images-224.zarr) or delete it to rebuild"
            )
        return _grow(dataset, options, object_ids, about, attrs)
    _check_owned(dataset, store, status, attrs)
    if attrs is not None:
        log.warning("%s was left half-created; making it again", store)
    for folder in (store, status):
        if dataset.fs.exists(dataset.path(folder)):
            dataset.fs.rm(dataset.path(folder), recursive=True)
    n, size, chunk = len(object_ids), options.size, options.chunk
    group = zarr.open_group(store=dataset.zarr_store(store), mode="w", attributes=dict(STORE_MARK))
    group.create_array(
        "images",
        shape=(n, size, size, 3),
        chunks=(chunk, size, size, 3),
        dtype="uint8",
        compressors=image_codecs(),
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
    return list(object_ids)


def _group_attrs(dataset: Dataset, store: str) -> dict | None:
    """The attributes in a store's ``zarr.json``, or None when there is none; {} for a file that
    is not a Zarr group's metadata (it is then not ours: ``_check_owned`` refuses it)."""
    if not dataset.exists(f"{store}/zarr.json"):
        return None
    try:
        meta = dataset.read_json(f"{store}/zarr.json")
    except ValueError:
        return {}
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else {}


def _check_owned(dataset: Dataset, store: str, status: str, attrs: dict | None) -> None:
    """Refuse to remake a store unless both of its folders are metdata's own.

    Raises:
        StoreMismatch: the store folder is not a store metdata started, or the status folder holds
            anything but status shards (naming a few of those files, and the fix).
    """
    root = dataset.url.rstrip("/")
    fix = "it is left as it is: give another --store, or move that folder away yourself"
    store_files = _entries(dataset, store)
    if attrs is None and store_files:
        raise StoreMismatch(f"{root}/{store} exists and is not a Zarr store (it holds {store_files[:3]}); {fix}")
    if attrs is not None and any(attrs.get(k) != v for k, v in STORE_MARK.items()):
        raise StoreMismatch(
            f"{root}/{store} is a Zarr store metdata did not make (its zarr.json has no "
            f"{STORE_MARK} attribute), or one an older metdata left half-made; {fix}"
        )
    foreign = [
        name
        for name, kind in _entries(dataset, status, detail=True)
        if kind != "file" or not (layout.STATUS_SHARD.fullmatch(name) or name == layout.STORE_SUMMARY or name[0] == ".")
    ]
    if foreign:
        raise StoreMismatch(
            f"{root}/{status}/ is the status folder of {store}, but it holds files that are not status shards "
            f"({sorted(foreign)[:3]}); {fix}"
        )


def _entries(dataset: Dataset, folder: str, detail: bool = False) -> list:
    """The names in a folder (with ``detail``, (name, type) pairs); [] if there is no folder."""
    path = dataset.path(folder)
    dataset.fs.invalidate_cache(path)
    try:
        entries = dataset.fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    own = path.rstrip("/").split("://")[-1]
    out = [
        (e["name"].rstrip("/").rsplit("/", 1)[-1], e["type"])
        for e in entries
        if e["name"].rstrip("/").split("://")[-1] != own  # some stores list the folder itself
    ]
    return out if detail else [name for name, _ in out]


def _grow(dataset: Dataset, options: StoreShape, object_ids: list[int], about: dict, attrs: dict) -> list[int]:
    """Check a complete store against the selection; append the selection's new objects as new slots.

    Existing slots and chunks are not touched; the arrays are resized and the new slots' ids
    written. 0 is no objectID: slots left 0 by an interrupted growth are filled by the next one.
    """
    group = dataset.open_zarr(options.store, "r+")
    have = np.asarray(group["object_id"][:], np.int64)
    have = have[: int(np.count_nonzero(have))]
    have_ids = have.tolist()
    known, wanted = set(have_ids), set(object_ids)
    if wanted == known and len(have_ids) == group["object_id"].shape[0]:
        return have_ids
    where = f"{dataset.url}/{options.store}"
    recorded = {k: attrs.get(k) for k in about}
    if recorded != about:
        raise StoreMismatch(
            f"{where} holds another selection ({recorded}, {len(have_ids)} objects; not {about}, "
            f"{len(object_ids)} objects); it is left as it is. Use another --store for this one"
        )
    lost = sorted(known - wanted)
    if lost:
        raise StoreMismatch(
            f"{where} holds {len(lost)} objects that this selection no longer has (e.g. {lost[:5]}: their rows "
            f"changed since the store was made); it is left as it is. Keep using it as it is with "
            f"'metdata train', or build this selection into another store (--store NEW.zarr), or delete "
            f"{options.store} and {layout.status_folder(options.store)}/ under the root to rebuild it"
        )
    new = [i for i in object_ids if i not in known]
    n = len(have_ids) + len(new)
    size = options.size
    group["images"].resize((n, size, size, 3))
    group["valid"].resize((n,))
    group["object_id"].resize((n,))
    group["object_id"][len(have_ids) :] = np.asarray(new, np.int64)
    group.attrs.update({"grown_at": dt.datetime.now(dt.UTC).isoformat(), "slot_order": "objectID order per growth"})
    log.info("%s grows by %d objects (slots %d to %d)", options.store, len(new), len(have_ids), n - 1)
    return have_ids + new
