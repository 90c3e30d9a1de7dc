"""The dataset root's layout: the one place that says where each file lives (pure, no I/O).

Under a root::

    ids/listing.parquet        the id listing snapshot (objectID), taken by ``metdata ids``
    ids/_listing.json          when and with which filters it was taken; a search's queries, totals, splits
    ids/_csv.json              the MetObjects.csv last loaded: its URL, bytes, sha256 and rows
    ids/candidates-<target>.parquet  the ids a target's searches found (``--add`` merges them): what
                               ``ingest --since --target`` refreshes
    objects/part-NNNNNNN.parquet  one shard per task's ids, named after its first id
    objects/_summary.json      the last ingestion run's summary
    objects/_runs/ingest-<UTC time>.json  every run's summary
    objects/.csv-part-NNNNNNN.parquet.<run>.tmp  a CSV load's shards, staged until the whole file is read
    images.zarr/               Zarr v3 group: images (N, S, S, 3) uint8 RGB, object_id, valid
    images/part-NNNNNN.parquet one status shard per Zarr chunk (written last: the done mark)
    images/_summary.json       the last images run's summary
    runs/<target>/             a training run (the demo's default; any RUN URL works)
    _locks/<folder>.json       the lease of the run writing objects/ or a store (metdata.storage.lock)

A store named ``NAME.zarr`` keeps its status shards in ``NAME/``.
"""

from __future__ import annotations

import hashlib
import re

from metdata.errors import DatasetError

LISTING = "ids/listing.parquet"
LISTING_META = "ids/_listing.json"
CSV_SOURCE = "ids/_csv.json"
OBJECTS = "objects"
SUMMARY = "objects/_summary.json"
RUNS = "objects/_runs"
LOCKS = "_locks"
#: The image store a command uses unless told otherwise (``--store``).
DEFAULT_STORE = "images.zarr"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def target_candidates(target: str) -> str:
    """The file of a target's search candidates; a name that is no plain file name (a target file
    may name itself anything) is replaced by its hash.

    >>> target_candidates("painting-culture")
    'ids/candidates-painting-culture.parquet'
    >>> target_candidates("../x")
    'ids/candidates-sha1-72e4d01dd8ef43d8.parquet'
    """
    if _PLAIN_NAME.fullmatch(target) and ".." not in target:
        return f"ids/candidates-{target}.parquet"
    return f"ids/candidates-sha1-{hashlib.sha1(target.encode()).hexdigest()[:16]}.parquet"


def lock_file(folder: str) -> str:
    """The lease of the one writer of a stage folder (``objects``, a store such as ``images.zarr``).

    >>> lock_file("objects")
    '_locks/objects.json'
    """
    return f"{LOCKS}/{folder}.json"


#: The root's own folders: no store, status folder or output folder may take their names.
STAGE_FOLDERS = frozenset({"ids", "objects", "runs"})
_STORE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.zarr")
#: A status shard's file name: ``part-NNNNNN.parquet``, NNNNNN the chunk index.
STATUS_SHARD = re.compile(r"part-(\d{6})\.parquet")
#: A store's status folder holds its status shards and this summary.
STORE_SUMMARY = "_summary.json"


def object_shard(first_id: int) -> str:
    """The shard file of ``objects/`` that starts at ``first_id``.

    >>> object_shard(45734)
    'objects/part-0045734.parquet'
    """
    return f"{OBJECTS}/part-{first_id:07d}.parquet"


#: A shard a CSV load staged (hidden: no reader takes it for data), with its first id and the load's id.
CSV_STAGED = re.compile(r"\.csv-part-(\d{7})\.parquet\.([0-9a-f]{32})\.tmp")


def csv_staged_shard(first_id: int, load: str) -> str:
    """Where a CSV load (``load``: 32 hex digits) stages the shard that starts at ``first_id``; it
    becomes ``object_shard(first_id)`` once the whole file is read and checked.

    >>> csv_staged_shard(45734, "0" * 32)
    'objects/.csv-part-0045734.parquet.00000000000000000000000000000000.tmp'
    """
    return f"{OBJECTS}/.csv-part-{first_id:07d}.parquet.{load}.tmp"


def ingest_run_summary(stamp: str) -> str:
    """Where one ingestion run's summary is kept (``stamp``: its UTC time, without colons)."""
    return f"{RUNS}/ingest-{stamp}.json"


def status_folder(store: str) -> str:
    """The status folder of a store (a checked name: see ``store_paths``).

    >>> status_folder("images-224.zarr")
    'images-224'
    """
    return store_paths(store)[1]


def status_shard(store: str, chunk: int) -> str:
    """The status shard of chunk ``chunk`` of a store (the chunk's done mark).

    >>> status_shard("images.zarr", 3)
    'images/part-000003.parquet'
    """
    return f"{status_folder(store)}/part-{chunk:06d}.parquet"


def store_summary(store: str) -> str:
    """The last images run's summary of a store."""
    return f"{status_folder(store)}/{STORE_SUMMARY}"


def run_folder(root: str, target: str) -> str:
    """The demo's run folder for a target under a root URL.

    >>> run_folder("s3://b/met/", "painting-culture")
    's3://b/met/runs/painting-culture'
    """
    return f"{root.rstrip('/')}/runs/{target}"


def store_paths(name: str) -> tuple[str, str]:
    """The store folder and status folder of a store name: ``images-224.zarr`` -> both under the root.

    A store name is one plain folder name ending ``.zarr`` whose status folder (the name without
    ``.zarr``) is no other folder of the root: the images stage deletes both when it remakes a store,
    so neither may name anything it does not own.

    >>> store_paths("images-224.zarr")
    ('images-224.zarr', 'images-224')
    >>> store_paths("../victim.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    metdata.errors.DatasetError: store name '../victim.zarr' is not a plain folder name: ...
    >>> store_paths("objects.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    metdata.errors.DatasetError: store name 'objects.zarr' would use objects/ (a folder of the root ...

    Raises:
        DatasetError: a path rather than a name, a hidden name, an empty stem, or a stem that is
            one of the root's own folders (``ids``, ``objects``, ``runs``) or another store (``x.zarr.zarr``).
    """
    fix = "give another name ending .zarr, e.g. images-224.zarr"
    if not isinstance(name, str) or not _STORE_NAME.fullmatch(name):
        raise DatasetError(
            f"store name {name!r} is not a plain folder name: use letters, digits, '-', '_' and '.', "
            f"start with a letter or digit, no '/', and end with .zarr; {fix}"
        )
    stem = name.removesuffix(".zarr")
    if stem.lower() in STAGE_FOLDERS or stem.lower().endswith(".zarr"):
        raise DatasetError(
            f"store name {name!r} would use {stem}/ (a folder of the root or another store) as its status folder; {fix}"
        )
    return name, stem
