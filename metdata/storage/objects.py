"""The objects table: the one reader of ``objects/`` that selection, training and explore share.

Each shard is checked before the table is read (a foreign file under ``objects/`` is named, with
the fix, rather than read as null rows); the table comes sorted by objectID.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from metdata.core.records import SCHEMA
from metdata.errors import UserError
from metdata.storage.dataset import Dataset, DatasetError, check_column
from metdata.storage.layout import OBJECTS


class NoMetadata(UserError):
    """There is no metadata under the root yet."""


def objects_table(dataset: Dataset, columns: list[str] | None = None, ids: Iterable[int] | None = None) -> pa.Table:
    """The whole ``objects/`` table (or some columns; with ``ids``, only those objects' rows,
    filtered while reading), sorted by objectID.

    Raises:
        NoMetadata: no metadata yet (run ``metdata ingest`` first).
        DatasetError: a file of ``objects/`` is not a metdata shard (named, with the fix).
    """
    names = dataset.data_files(OBJECTS)
    if not names:
        raise NoMetadata(f"no metadata under {dataset.url}/objects: run 'metdata ingest' first")
    parts = pads.dataset([dataset.path(f) for f in names], filesystem=dataset.fs, format="parquet")
    for name, fragment in zip(names, parts.get_fragments(), strict=True):
        try:
            schema = fragment.physical_schema
        except pa.ArrowException as exc:
            raise dataset.foreign_file(name, str(exc).splitlines()[0]) from exc
        for key in ("objectID", "status"):  # a foreign file would otherwise read as null rows
            check_column(dataset, name, schema, SCHEMA.field(key))
    try:
        wanted = None if ids is None else pc.field("objectID").isin(pa.array(sorted(ids), pa.int64()))
        table = parts.to_table(columns=columns, filter=wanted)
    except pa.ArrowException as exc:
        raise DatasetError(
            f"the shards of {dataset.url_of(OBJECTS)} cannot be read together "
            f"({str(exc).splitlines()[0]}); another tool's file? Move it out of {OBJECTS}/ and rerun"
        ) from exc
    return table.sort_by("objectID")
