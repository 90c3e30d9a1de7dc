"""Object records as Arrow rows: the explicit schema of ``objects/`` and the mapping onto it.

One row per objectID: the 57 API fields in API order, then ``status``, ``error``, ``attempts``
and ``fetched_at``. Nested fields keep their shape (lists of structs; ``elementMeasurements``
as a map, since its keys vary: Height, Width, Depth, Diameter, ...). Nulls stay nulls; fields
missing from old records become null. Rows that are not ``ok`` carry only objectID and the
bookkeeping columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import pyarrow as pa

from metdata.core.schema import BOOL_FIELDS, FIELDS, INT_FIELDS
from metdata.core.statuses import Status

CONSTITUENT = pa.struct(
    [
        ("constituentID", pa.int64()),
        ("role", pa.string()),
        ("name", pa.string()),
        ("constituentULAN_URL", pa.string()),
        ("constituentWikidata_URL", pa.string()),
        ("gender", pa.string()),
    ]
)
TAG = pa.struct([("term", pa.string()), ("AAT_URL", pa.string()), ("Wikidata_URL", pa.string())])
MEASUREMENT = pa.struct(
    [
        ("elementName", pa.string()),
        ("elementDescription", pa.string()),
        ("elementMeasurements", pa.map_(pa.string(), pa.float64())),
    ]
)
_NESTED = {
    "additionalImages": pa.list_(pa.string()),
    "constituents": pa.list_(CONSTITUENT),
    "measurements": pa.list_(MEASUREMENT),
    "tags": pa.list_(TAG),
}


def _field_type(name: str) -> pa.DataType:
    if name in INT_FIELDS:
        return pa.int64()
    if name in BOOL_FIELDS:
        return pa.bool_()
    return _NESTED.get(name, pa.string())


#: ``status`` is how a row's lookup ended (``statuses.RECORD_STATUSES``): ``csv`` for rows from MetObjects.csv.

SCHEMA = pa.schema(
    [pa.field(name, _field_type(name), nullable=name != "objectID") for name in FIELDS]
    + [
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def record_row(record: Mapping, attempts: int, fetched_at: dt.datetime) -> dict:
    """Map one API record onto the schema: API order, missing fields as null.

    ``elementMeasurements`` dicts become map entries; everything else passes through.

    >>> row = record_row({"objectID": 5, "title": "Jar", "tags": None}, 1, dt.datetime(2026, 1, 1))
    >>> row["objectID"], row["title"], row["tags"], row["culture"], row["status"]
    (5, 'Jar', None, None, 'ok')
    """
    row = {name: record.get(name) for name in FIELDS}
    if row["measurements"]:
        row["measurements"] = [
            {**m, "elementMeasurements": list((m.get("elementMeasurements") or {}).items())}
            for m in row["measurements"]
        ]
    row.update(status=Status.OK.value, error=None, attempts=attempts, fetched_at=fetched_at)
    return row


def error_row(object_id: int, status: str, error: str, attempts: int, fetched_at: dt.datetime) -> dict:
    """A row for an id whose lookup did not give a record: only the id and why.

    >>> error_row(7, "not_found", "ObjectID not found", 1, None)["status"]
    'not_found'
    """
    row = dict.fromkeys(FIELDS)
    row.update(objectID=object_id, status=status, error=error, attempts=attempts, fetched_at=fetched_at)
    return row


def rows_to_table(rows: Iterable[dict]) -> pa.Table:
    """Build a table with the explicit schema, sorted by objectID.

    A record whose values do not fit the schema (the API changed a type) does not sink the
    shard: it becomes a ``failed`` row naming the problem.
    """
    rows = sorted(rows, key=lambda r: r["objectID"])
    try:
        return pa.Table.from_pylist(rows, schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.Table.from_pylist([fitted(row) for row in rows], schema=SCHEMA)


def all_fitted(rows: list[dict]) -> list[dict]:
    """``rows``, each one that does not fit the schema replaced by a ``failed`` row (``fitted``).

    One table for all of them first (about 0.04 ms a row); row by row only when that fails.
    """
    try:
        pa.Table.from_pylist(rows, schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return [fitted(row) for row in rows]
    return rows


def fitted(row: dict) -> dict:
    """``row`` if its values fit the schema, else a ``failed`` row naming the problem."""
    try:
        pa.Table.from_pylist([row], schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        message = f"record does not fit the schema: {exc}"[:500]
        return error_row(row["objectID"], Status.FAILED.value, message, row["attempts"], row["fetched_at"])
    return row
