"""The dataset root and its layout: the one place that knows where things live.

A root is a URL: a local folder (``data``, ``file:///data``) or an object-store prefix
(``s3://bucket/prefix``), reached through fsspec. Under it::

    ids/listing.parquet        the id listing snapshot (objectID), taken by ``metdata ids``
    ids/_listing.json          when and with which filters it was taken
    objects/part-NNNNNNN.parquet  one shard per ~1,000 ids, named after its first id
    objects/_summary.json      the last ingestion run's summary
    objects/_runs/ingest-<UTC time>.json  every run's summary
    images.zarr/               Zarr v3 group: images (N, S, S, 3) uint8 RGB, object_id, valid
    images/part-NNNNNN.parquet one status shard per Zarr chunk (written last: the done mark)
    images/_summary.json       the last images run's summary

Files whose names start with ``_`` or ``.`` are not data (pyarrow, pandas and DuckDB skip
them). Every file appears atomically: local files are written aside and renamed; an S3 PUT is
atomic by itself.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from functools import cached_property

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from metdata.errors import UserError

LISTING = "ids/listing.parquet"
LISTING_META = "ids/_listing.json"
OBJECTS = "objects"
SUMMARY = "objects/_summary.json"
RUNS = "objects/_runs"


class DatasetError(UserError):
    """The dataset root cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Dataset:
    """A dataset root URL and the options to reach it (picklable: sent to Dask workers).

    Args:
        url: local path, ``file://`` or ``s3://`` URL.
        storage_options: passed to fsspec (e.g. ``{"endpoint_url": ..., "key": ...}``).
    """

    url: str
    storage_options: dict = field(default_factory=dict, hash=False)

    @cached_property
    def _fs_root(self) -> tuple[fsspec.AbstractFileSystem, str]:
        try:
            return fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ValueError, ImportError, TypeError) as exc:
            raise DatasetError(
                f"cannot open the dataset root {self.url!r}: {exc}. Give a local "
                "path or an s3://bucket/prefix URL, with valid --storage-options"
            ) from exc

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs_root[0]

    @property
    def local(self) -> bool:
        return "file" in self.fs.protocol or "local" in self.fs.protocol

    def path(self, relative: str) -> str:
        """The full path of a file under the root."""
        return f"{self._fs_root[1].rstrip('/')}/{relative}"

    def exists(self, relative: str) -> bool:
        """Whether a file exists now. Never from a cached listing: resume decisions depend on it,
        and fsspec keeps S3 listings per filesystem instance, which outlive tasks on a worker."""
        path = self.path(relative)
        self.fs.invalidate_cache(path)
        return self.fs.exists(path)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file so that it appears whole or not at all."""
        final = self.path(relative)
        if not self.local:
            self.fs.pipe_file(final, data)  # one PUT: atomic on S3
            return
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        parent, name = final.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, final)

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.path(relative))

    def write_json(self, relative: str, payload: object) -> None:
        self.write_bytes(relative, json.dumps(payload, indent=2, default=str).encode())

    def read_json(self, relative: str) -> object:
        return json.loads(self.read_bytes(relative))

    def write_table(self, relative: str, table: pa.Table) -> None:
        """Write a Parquet file atomically (zstd, row groups of the whole shard)."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.write_bytes(relative, buffer.getvalue())

    def read_table(self, relative: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(self.path(relative), "rb") as f:
            return pq.read_table(f, columns=columns)

    def data_files(self, folder: str, suffix: str = ".parquet") -> list[str]:
        """The data files of a folder (relative paths, sorted); ``_``/``.`` files are not data."""
        self.fs.invalidate_cache(self.path(folder))  # fresh, as for exists()
        try:
            names = self.fs.ls(self.path(folder), detail=False)
        except FileNotFoundError:
            return []
        base = [n.rsplit("/", 1)[-1] for n in names]
        return sorted(f"{folder}/{n}" for n in base if n.endswith(suffix) and n[0] not in "._")

    def zarr_store(self, relative: str):
        """A Zarr store for a folder under the root: a LocalStore, or an fsspec store on S3."""
        import zarr.storage

        if self.local:
            return zarr.storage.LocalStore(self.path(relative))
        url = f"{self.url.rstrip('/')}/{relative}"
        return zarr.storage.FsspecStore.from_url(url, storage_options=self.storage_options or None)

    def open_zarr(self, relative: str, mode: str = "r"):
        """The Zarr group at a folder under the root, its members' metadata read and checked.

        Raises:
            DatasetError: the group or one of its arrays has unreadable metadata (a damaged store).
            FileNotFoundError, zarr.errors.GroupNotFoundError: there is no store (callers say what to run).
        """
        import zarr

        store = self.zarr_store(relative)  # a bad --storage-options fails here, not as a damaged store
        try:
            group = zarr.open_group(store=store, mode=mode)
            if mode == "r":
                group.members()
        except (ValueError, TypeError) as exc:  # zarr's metadata errors are ValueErrors
            if isinstance(exc, FileNotFoundError):  # zarr's not-found errors are both
                raise
            raise DatasetError(
                f"{self.url.rstrip('/')}/{relative} is not a readable Zarr store ({type(exc).__name__}: {exc}); "
                "it is damaged: delete it and rerun 'metdata images' to rebuild it"
            ) from exc
        return group

    def check_writable(self) -> None:
        """Write and delete a probe file.

        Raises:
            DatasetError: naming the root, the error, and how to fix it.
        """
        probe = f"_probe-{uuid.uuid4().hex}"
        try:
            self.write_bytes(probe, b"metdata")
            self.fs.rm(self.path(probe))
        except DatasetError:
            raise
        except Exception as exc:  # fsspec backends raise many types; all mean "not writable"
            raise DatasetError(
                f"cannot write to the dataset root {self.url!r} ({type(exc).__name__}: {exc}). "
                "Check that the folder or bucket exists and is writable; for S3, check the "
                "credentials (AWS_* environment, profile, or --storage-options)"
            ) from exc
