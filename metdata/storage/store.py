"""An images store's lifecycle: create it, check it against a selection, grow it, read its statuses.

The store (``NAME.zarr``) holds ``images``, ``object_id`` and ``valid``, one chunk of slots per
task; its status folder (``NAME/``, ``layout.status_folder``) holds one status shard per done
chunk. ``prepare_store`` makes or checks a store before any task runs, and never deletes what
metdata did not make (``STORE_MARK``).
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import zarr

from metdata.errors import UserError
from metdata.images.images import ImageOptions, open_arrays
from metdata.storage import layout
from metdata.storage.dataset import Dataset

log = logging.getLogger(__name__)


class StoreMismatch(UserError):
    """An existing store was made for another size or selection; it is left untouched."""


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


def prepare_store(dataset: Dataset, options: ImageOptions, object_ids: list[int], about: dict) -> list[int]:
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


def _grow(dataset: Dataset, options: ImageOptions, object_ids: list[int], about: dict, attrs: dict) -> list[int]:
    """Check a complete store against the selection; append the selection's new objects as new slots.

    Existing slots and chunks are not touched; the arrays are resized and the new slots' ids
    written. 0 is no objectID: slots left 0 by an interrupted growth are filled by the next one.
    """
    group = open_arrays(dataset, options)
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
            f"{options.store} and {options.status_folder}/ under the root to rebuild it"
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


def read_statuses(dataset: Dataset, options: ImageOptions) -> dict[int, list[str]]:
    """Chunk index -> the status of each of its slots, for the chunks that are done."""
    done = {}
    for name in dataset.data_files(options.status_folder):
        match = layout.STATUS_SHARD.fullmatch(name.rsplit("/", 1)[-1])
        if match is None:
            log.warning("%s is not a status shard: ignored", name)
            continue
        done[int(match.group(1))] = dataset.read_table(name, columns=["status"])["status"].to_pylist()
    return done
