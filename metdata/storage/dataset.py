"""The dataset root: reading and writing its files atomically, local or on object storage.

A root is a URL: a local folder (``data``, ``file:///data``) or an object-store prefix
(``s3://bucket/prefix``), reached through fsspec. Where each file lives under it is
``metdata.storage.layout``'s to say. Files whose names start with ``_`` or ``.`` are not data (pyarrow,
pandas and DuckDB skip them). Every file appears atomically: local files are written aside and
renamed; an S3 PUT is atomic by itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import posixpath
import re
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from metdata.errors import DatasetError
from metdata.storage.layout import CSV_STAGED

log = logging.getLogger(__name__)

#: Hidden temporary files older than this are leftovers of a killed or failed write.
STALE_TMP_S = 3600.0


#: The temporary files metdata writes aside (``.NAME.<uuid hex>.tmp``): the only ones it cleans up.
_OUR_TMP = re.compile(r"\.(?:.+\.)?[0-9a-f]{32}\.tmp")


def check_column(dataset: Dataset, relative: str, schema: pa.Schema, wanted: pa.Field) -> None:
    """Raise the foreign-file error unless ``schema`` has the column ``wanted`` with its type."""
    index = schema.get_field_index(wanted.name)
    if index < 0 or schema.field(index).type != wanted.type:
        found = "missing" if index < 0 else f"of type {schema.field(index).type}"
        raise dataset.foreign_file(relative, f"column {wanted.name} {found}, not {wanted.type}")


def _normalized(url: str, storage_options: dict | None = None) -> tuple[str, str]:
    """(protocol, absolute normalized path) of a URL: symlinks resolved locally, ``..`` folded."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return "file", os.path.realpath(path)
    return protocol, posixpath.normpath("/" + path.strip("/"))


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

    def url_of(self, relative: str) -> str:
        """The URL of a file or folder of the root, for messages and summaries.

        >>> Dataset("s3://bucket/root/").url_of("objects")
        's3://bucket/root/objects'
        """
        return f"{self.url.rstrip('/')}/{relative}"

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
        try:
            self.fs.pipe_file(tmp, data)
            os.replace(tmp, final)  # a rename, never fsspec's mv (shutil.move: into a folder, or a copy)
        except BaseException:  # a full disk or an interrupt: no hidden half-file stays behind
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(tmp)
            raise

    def move(self, source: str, final: str) -> None:
        """Give a whole file of the root its final name: a rename locally, a copy then a delete on
        S3 (the copy appears whole: a reader sees the file complete or not at all)."""
        if self.local:
            os.replace(self.path(source), self.path(final))
        else:
            self.fs.copy(self.path(source), self.path(final))
            self.fs.rm_file(self.path(source))

    def remove(self, relative: str) -> None:
        """Delete a file of the root if it is there."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    def hidden_files(self, folder: str) -> list[str]:
        """The names (not paths) of the files of a folder that start with ``.`` (fresh, as ``exists``)."""
        self.fs.invalidate_cache(self.path(folder))
        try:
            names = self.fs.ls(self.path(folder), detail=False)
        except FileNotFoundError:
            return []
        return sorted(n.rsplit("/", 1)[-1] for n in names if n.rsplit("/", 1)[-1].startswith("."))

    def remove_stale_tmp(self, folder: str = "", older_than: float = STALE_TMP_S, depth: int = 2) -> int:
        """Delete the hidden temporary files that killed writes left in a folder and its subfolders:
        only names ``write_bytes`` and the lock make (``.NAME.<32 hex>.tmp``), never another tool's.

        Only files older than ``older_than`` seconds go, so a write in progress is never touched (a CSV
        load's staged shards never: a slow download may stage for hours; the next load, under the
        ingest lease, deletes a killed one's);
        Zarr stores (``*.zarr``) are not searched. Returns how many were deleted (0 on S3, where a
        write is one PUT and leaves no temporary file).
        """
        if not self.local:
            return 0
        try:
            entries = self.fs.ls(self.path(folder), detail=True)
        except FileNotFoundError:
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for entry in entries:
            name = entry["name"].rsplit("/", 1)[-1]
            if entry["type"] == "directory" and depth > 0 and not name.endswith(".zarr"):
                removed += self.remove_stale_tmp(f"{folder}/{name}".lstrip("/"), older_than, depth - 1)
            elif (
                _OUR_TMP.fullmatch(name) and not CSV_STAGED.fullmatch(name) and (entry.get("mtime") or cutoff) < cutoff
            ):
                self.fs.rm_file(entry["name"])
                removed += 1
        return removed

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.path(relative))

    def write_json(self, relative: str, payload: object) -> None:
        """Write JSON atomically; NaN or infinity is refused (they are not JSON).

        Raises:
            ValueError: the payload holds a NaN or an infinity (a bug: values must be finite).
        """
        self.write_bytes(relative, json.dumps(payload, indent=2, default=str, allow_nan=False).encode())

    def write_summary(self, relatives: tuple[str, ...], summary: dict) -> str | None:
        """Write a run's summary to each path; return why it could not be (None when written).

        The summary is the last thing a run writes: a full disk or a lost bucket here must not hide
        the run's own outcome (failed tasks), so the problem is returned for the caller to report.
        """
        for relative in relatives:
            try:
                self.write_json(relative, summary)
            except (OSError, ValueError) as exc:  # ENOSPC, permissions, S3 errors; NaN (a bug, logged)
                log.error("could not write %s", relative, exc_info=True)
                return (
                    f"the run summary {self.url_of(relative)} could not be written "
                    f"({type(exc).__name__}: {exc}); the finished work is kept: free space or fix the root, "
                    "then rerun the same command"
                )
        return None

    def read_json(self, relative: str) -> object:
        return json.loads(self.read_bytes(relative))

    def write_table(self, relative: str, table: pa.Table, dictionary: bool = True) -> None:
        """Write a Parquet file atomically (zstd, row groups of the whole shard); ``dictionary=False``
        for columns of distinct values (an id listing), where a dictionary only costs memory."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", use_dictionary=dictionary)
        self.write_bytes(relative, buffer.getvalue())

    def read_table(self, relative: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
        """Read a Parquet file (some columns); with ``schema``, the columns read must have its types.

        Raises:
            DatasetError: not Parquet, or a column missing or of another type (another tool's file).
        """
        try:
            with self.fs.open(self.path(relative), "rb") as f:
                table = pq.read_table(f, columns=columns)
        except pa.ArrowException as exc:
            raise self.foreign_file(relative, str(exc).splitlines()[0]) from exc
        for wanted in schema or ():
            if columns is None or wanted.name in columns:
                check_column(self, relative, table.schema, wanted)
        return table

    def foreign_file(self, relative: str, problem: str) -> DatasetError:
        """The error for a file that is not one metdata wrote (names it and how to get it out of the way)."""
        folder = relative.rsplit("/", 1)[0]
        return DatasetError(
            f"{self.url_of(relative)} is not a metdata table ({problem}); another tool's file? "
            f"Move it out of {folder}/ (or rename it to start with '_') and rerun"
        )

    def check_output(self, url: str, what: str, storage_options: dict | None = None) -> None:
        """Refuse an output folder that would write over this root's own data.

        An output (a run folder, an exploration report) may live under the root (``runs/NAME``,
        ``report``), but not be the root itself, a folder above it, a stage folder (``ids``,
        ``objects``), a store (``*.zarr``) or a store's status folder, nor lie inside one of them.

        Raises:
            DatasetError: naming the output, the folder it would overwrite, and the fix.
        """
        out_proto, out = _normalized(url, storage_options)
        root_proto, root = _normalized(self.url, self.storage_options)
        if out_proto != root_proto:
            return
        fix = f"give a folder of its own, e.g. {self.url_of('runs/NAME')} or a folder outside the root"
        if out == root or root.startswith(out.rstrip("/") + "/"):
            raise DatasetError(f"{what} {url!r} is the dataset root {self.url!r} or holds it: {fix}")
        if not out.startswith(root.rstrip("/") + "/"):
            return
        first = out[len(root.rstrip("/")) + 1 :].split("/", 1)[0]
        stage = first.lower() in {"ids", "objects", "images"} or first.endswith(".zarr") or first[0] in "._"
        if stage or self.exists(f"{first}.zarr/zarr.json"):  # a store's status folder
            raise DatasetError(f"{what} {url!r} is inside {first}/, a folder the dataset stages own: {fix}")

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
        url = self.url_of(relative)
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
                f"{self.url_of(relative)} is not a readable Zarr store ({type(exc).__name__}: {exc}); "
                "it is damaged: delete it and rerun 'metdata images' to rebuild it"
            ) from exc
        return group

    def check_writable(self) -> None:
        """Write and delete a probe file; then delete the temporary files killed writes left (every stage
        starts with this check).

        Raises:
            DatasetError: naming the root, the error, and how to fix it.
        """
        probe = f"_probe-{uuid.uuid4().hex}"
        try:
            self.write_bytes(probe, b"metdata")
            self.fs.rm(self.path(probe))
            if removed := self.remove_stale_tmp():
                log.info("removed %d temporary files left by killed writes under %s", removed, self.url)
        except DatasetError:
            raise
        except Exception as exc:  # fsspec backends raise many types; all mean "not writable"
            raise DatasetError(
                f"cannot write to the dataset root {self.url!r} ({type(exc).__name__}: {exc}). "
                "Check that the folder or bucket exists and is writable; for S3, check the "
                "credentials (AWS_* environment, profile, or --storage-options)"
            ) from exc
