"""Labelling a metadata table by a target: ``targets.label_table`` against one ``label`` call per row.

The table holds ``--rows`` rows (500,000: the size of the Met's collection) of the columns the
built-in targets read, drawn at random from a pool of ``--distinct`` rows: records of the emulator's
synthetic catalog, each copied several times with its culture numbered ("Japanese 17" is still
Japanese to the rules; an empty culture becomes "17", which no rule takes), so the table has about
as many combinations as the pool has rows, more than the catalog alone would give. Three ways,
each timed (best of ``--repeat``) on the same table:

- per row: ``[target.label(r) for r in table.select(target.columns).to_pylist()]``, what
  ``selection.select`` and ``training.load_slots`` did;
- labels_of: the exploration report's former helper (a Python dict of the rows' value tuples);
- label_table: the vectorised function (dictionary encoding, one ``label`` per combination).

The labels of all three are checked equal; the ratio is per row over label_table.

    python benchmarks/label_table.py [--rows 500000] [--distinct 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from metdata.core.targets import Target, builtin, label_table
from metdata.emulator.synthetic import SyntheticCatalog

COLUMNS = ["classification", "objectName", "culture", "country", "artistNationality"]


def make_table(rows: int, distinct: int, seed: int = 0) -> pa.Table:
    """``rows`` rows of the targets' columns drawn from ``distinct`` value combinations."""
    catalog = SyntheticCatalog(min(distinct, 5000), seed=seed, mix="dense")
    records = [catalog.record(i) for i in catalog.listing(None, None)]
    pool = []
    for k in range(distinct):
        record = records[k % len(records)]
        copy = k // len(records)
        culture = record["culture"] if copy == 0 else f"{record['culture']} {copy}".strip()
        pool.append({**{c: record[c] for c in COLUMNS}, "culture": culture})
    pool_table = pa.Table.from_pylist(pool)
    pick = np.random.default_rng(seed).integers(0, len(pool), rows)
    return pool_table.take(pa.array(pick))


def per_row(table: pa.Table, target: Target) -> list[str | None]:
    return [target.label(r) for r in table.select(target.columns).to_pylist()]


def labels_of(table: pa.Table, target: Target) -> list[str | None]:
    columns = target.columns
    seen: dict[tuple, str | None] = {}
    out = []
    for values in zip(*(table[c].to_pylist() for c in columns), strict=True):
        if values not in seen:
            seen[values] = target.label(dict(zip(columns, values, strict=True)))
        out.append(seen[values])
    return out


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--distinct", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = make_table(args.rows, args.distinct)
    print(f"{table.num_rows:,} rows drawn from a pool of {args.distinct:,}; best of {args.repeat}")
    for name in ("painting-culture", "object-type"):
        target = builtin(name)
        combos = table.select(target.columns).group_by(target.columns).aggregate([]).num_rows
        slow, expected = best(lambda t=target: per_row(table, t), args.repeat)
        dicts, former = best(lambda t=target: labels_of(table, t), args.repeat)
        fast, labels = best(lambda t=target: label_table(table, t), args.repeat)
        assert labels.to_pylist() == expected == former, name
        labelled = sum(label is not None for label in expected)
        print(
            f"{name:<17} {combos:>7,} distinct ({len(target.columns)} columns), {labelled:>7,} labelled: "
            f"per row {slow:6.2f} s, labels_of {dicts:6.2f} s, label_table {fast:6.3f} s; "
            f"per row / label_table = {slow / fast:5.1f}x"
        )


if __name__ == "__main__":
    main()
