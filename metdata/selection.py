"""Which objects the images stage takes: a target, a ``--where`` expression, or every image.

Runs on the client over the ``objects/`` table. ``--where`` is a SQL boolean expression over
the metadata columns, evaluated by DuckDB on the Arrow table in memory (no server, offline).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from metdata.dataset import OBJECTS, Dataset
from metdata.errors import UserError
from metdata.targets import resolve


class SelectionError(UserError):
    """The selection is malformed or empty; the message says how to fix it."""


def objects_table(dataset: Dataset, columns: list[str] | None = None) -> pa.Table:
    """The whole ``objects/`` table (or some columns), sorted by objectID."""
    files = [dataset.path(f) for f in dataset.data_files(OBJECTS)]
    if not files:
        raise SelectionError(f"no metadata under {dataset.url}/objects: run 'metdata ingest' first")
    table = pads.dataset(files, filesystem=dataset.fs, format="parquet").to_table(columns=columns)
    return table.sort_by("objectID")


def select(table: pa.Table, url_field: str, target: str | None = None, where: str | None = None) -> pa.Table:
    """Keep the rows that have (or may have) an image and match the target or expression.

    Rows looked up through the API need a non-empty image URL; rows from the CSV (status
    ``csv``) have no URLs, so public-domain ones are kept and looked up later.

    Raises:
        TargetError: an unknown target or a bad target file.
        SelectionError: a malformed expression, or nothing selected.
    """
    has_image = pc.or_(
        pc.and_(pc.equal(table["status"], "ok"), pc.not_equal(pc.fill_null(table[url_field], ""), "")),
        pc.and_(pc.equal(table["status"], "csv"), pc.fill_null(table["isPublicDomain"], False)),
    )
    table = table.filter(has_image)
    if target is not None:
        rule = resolve(target)
        keep = [rule.label(r) is not None for r in table.select(rule.columns).to_pylist()]
        table = table.filter(pa.array(keep, pa.bool_()))
    if where:
        table = _where(table, where)
    if table.num_rows == 0:
        what = f"target {target!r}" if target else f"--where {where!r}" if where else "objects with images"
        raise SelectionError(f"the selection ({what}) is empty: ingest more objects or widen it")
    return table


def _where(table: pa.Table, expression: str) -> pa.Table:
    import duckdb

    with duckdb.connect() as con:
        con.register("objects", table)
        try:
            ids = con.sql(f"SELECT objectID FROM objects WHERE {expression}").arrow()  # the user's own data
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            raise SelectionError(
                f"malformed --where {expression!r}: {message}. Write a SQL condition over "
                "the metadata columns, e.g. \"department = 'Asian Art' AND objectBeginDate > 1600\""
            ) from exc
    if isinstance(ids, pa.RecordBatchReader):
        ids = ids.read_all()
    return table.filter(pc.is_in(table["objectID"], ids["objectID"]))
