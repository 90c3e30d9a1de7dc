"""Reading the Open Access ``MetObjects.csv`` (local path or URL) into schema rows."""

from __future__ import annotations

import csv
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv

from metdata.errors import UserError
from metdata.records import CSV_REQUIRED, csv_row


class CsvError(UserError):
    """The CSV cannot be used; the message says why."""


def read_rows(url: str, storage_options: dict | None = None, batch_rows: int = 50_000) -> Iterator[list[dict]]:
    """Yield batches of schema rows (status ``csv``) from a MetObjects.csv.

    Every column is read as text (ids like "1979.486.1" must stay strings) and mapped by
    ``records.csv_row``.

    Raises:
        CsvError: unreadable file, or required columns missing.
    """
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as f:
            first_line = f.readline().decode("utf-8-sig", errors="replace")
            columns = next(csv.reader([first_line]), [])
            missing = [c for c in CSV_REQUIRED if c not in columns]
            if missing:
                raise CsvError(f"{url} is not MetObjects.csv: missing columns {', '.join(missing)}")
            f.seek(0)
            convert = pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=False)
            reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=16 << 20), convert_options=convert)
            for batch in reader:
                rows = [csv_row(r) for r in batch.to_pylist()]
                for i in range(0, len(rows), batch_rows):
                    yield rows[i : i + batch_rows]
    except (OSError, pa.ArrowInvalid) as exc:
        raise CsvError(f"cannot read the CSV {url}: {exc}") from exc
