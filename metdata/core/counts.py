"""The exploration report's counts: pure functions over Arrow tables and lists.

Counting, grouping failures by cause and choosing grid samples; no file, network or drawing.
Rules run once per distinct combination of their columns, not once per row.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metdata.core.statuses import WITH_RECORD, Status
from metdata.core.targets import Target, label_table

#: Statuses of rows that carry a record (looked up, or read from MetObjects.csv).
URL_FIELD = "primaryImageSmall"
MISSING = "(none)"
NO_CLASS = "(no class)"


def counts(values: pa.Array | pa.ChunkedArray | Sequence, missing: str = MISSING) -> Counter:
    """How often each value occurs; null and blank values count as ``missing``.

    >>> counts(pa.array(["Asian Art", None, "Asian Art", " "]))
    Counter({'Asian Art': 2, '(none)': 2})
    """
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(list(values))
    found: Counter = Counter()
    for row in pc.value_counts(values).to_pylist():
        value = row["values"]
        blank = value is None or (isinstance(value, str) and not value.strip())
        found[missing if blank else value] += row["counts"]
    return found


def ranked(counter: Mapping) -> list[tuple[object, int]]:
    """Largest count first, ties by name.

    >>> ranked({"b": 1, "a": 1, "c": 5})
    [('c', 5), ('a', 1), ('b', 1)]
    """
    return sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))


def top_n(counter: Mapping, n: int) -> tuple[list[tuple[object, int]], int, int]:
    """The ``n`` largest counts, and how many values and how many records are left out.

    >>> top_n({"a": 3, "b": 1, "c": 3, "d": 1}, 2)
    ([('a', 3), ('c', 3)], 2, 2)
    """
    items = ranked(counter)
    rest = items[n:]
    return items[:n], len(rest), sum(count for _, count in rest)


def records(table: pa.Table) -> pa.Table:
    """The rows that carry a record (status ``ok`` or ``csv``), not lookup errors."""
    return table.filter(pc.is_in(table["status"], pa.array(WITH_RECORD)))


def _true(values: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.cast(pc.fill_null(values, False), pa.int64())).as_py() or 0)


def collection_counts(table: pa.Table) -> dict:
    """Headline counts of the ``objects/`` table.

    Needs the columns ``status``, ``department``, ``isPublicDomain`` and ``primaryImageSmall``.
    ``objects`` counts every row (every id looked up); ``records`` the rows with a record;
    ``with_image_url`` and ``public_domain`` count records; ``departments`` maps each
    department to those three counts, largest first.

    >>> t = pa.table({"status": ["ok", "ok", "not_valid"], "department": ["A", "B", None],
    ...               "isPublicDomain": [True, False, None], "primaryImageSmall": ["u", "", None]})
    >>> c = collection_counts(t)
    >>> c["objects"], c["records"], c["with_image_url"], c["public_domain"], c["statuses"]
    (3, 2, 1, 1, {'ok': 2, 'not_valid': 1})
    >>> c["departments"]["A"]
    {'records': 1, 'with_image_url': 1, 'public_domain': 1}
    """
    rec = records(table)
    has_url = pc.not_equal(pc.fill_null(rec[URL_FIELD], ""), "")
    public = pc.fill_null(rec["isPublicDomain"], False)
    flags = pa.table(
        {
            "department": rec["department"],
            "with_image_url": pc.cast(has_url, pa.int64()),
            "public_domain": pc.cast(public, pa.int64()),
        }
    )
    per_department: Counter = Counter()
    departments: dict[str, dict] = {}
    for row in (
        flags.group_by("department")
        .aggregate([([], "count_all"), ("with_image_url", "sum"), ("public_domain", "sum")])
        .to_pylist()
    ):
        name = row["department"] if (row["department"] or "").strip() else MISSING
        entry = departments.setdefault(name, {"records": 0, "with_image_url": 0, "public_domain": 0})
        entry["records"] += row["count_all"]
        entry["with_image_url"] += row["with_image_url_sum"] or 0
        entry["public_domain"] += row["public_domain_sum"] or 0
        per_department[name] = entry["records"]
    return {
        "objects": table.num_rows,
        "records": rec.num_rows,
        "with_image_url": _true(has_url),
        "public_domain": _true(public),
        "statuses": dict(ranked(counts(table["status"]))),
        "departments": {name: departments[name] for name, _ in ranked(per_department)},
    }


def distinct(table: pa.Table, columns: Sequence[str]) -> list[tuple[dict, int]]:
    """Each distinct combination of ``columns`` (as a record dict) and how many rows have it.

    Rules run once per combination instead of once per row: 500,000 rows have far fewer.

    >>> distinct(pa.table({"a": ["x", "y", "x"], "b": [1, 2, 1]}), ["a"])
    [({'a': 'x'}, 2), ({'a': 'y'}, 1)]
    """
    grouped = table.select(list(columns)).group_by(list(columns)).aggregate([([], "count_all")])
    out = []
    for row in grouped.to_pylist():
        n = row.pop("count_all")
        out.append((row, n))
    return sorted(out, key=lambda item: (-item[1], str(item[0])))


def classification_counts(table: pa.Table, merge: Target) -> tuple[Counter, Counter]:
    """Records by raw ``classification``, and by the ``merge`` target's label (aliases merged).

    >>> t = pa.table({"status": ["ok"] * 3, "classification": ["Metal", "Metal-Ornaments", "Glass"]})
    >>> from metdata.core.targets import builtin
    >>> raw, merged = classification_counts(t, builtin("object-type"))
    >>> sorted(raw.items()), sorted(merged.items())
    ([('Glass', 1), ('Metal', 1), ('Metal-Ornaments', 1)], [('Glass', 1), ('Metalwork', 2)])
    """
    rec = records(table)
    return counts(rec["classification"]), counts(label_table(rec, merge))


def target_counts(table: pa.Table, target: Target) -> tuple[Counter, Counter]:
    """The records a target selects: by raw value (its first non-empty field) and by class
    after the rules (``(no class)`` for those no rule takes).

    >>> t = pa.table({"status": ["ok"] * 4, "classification": ["Paintings"] * 3 + ["Ceramics"],
    ...               "objectName": ["Painting"] * 4, "culture": ["Chinese", "China", "German", "China"],
    ...               "country": [None] * 4, "artistNationality": [None] * 4})
    >>> from metdata.core.targets import builtin
    >>> raw, classes = target_counts(t, builtin("painting-culture"))
    >>> sorted(raw.items()), sorted(classes.items())
    ([('China', 2), ('Chinese', 1), ('German', 1)], [('(no class)', 1), ('China', 3)])
    """
    raw: Counter = Counter()
    classes: Counter = Counter()
    for record, n in distinct(records(table), target.columns):
        if target.belongs(record):
            raw[target.raw_value(record) or MISSING] += n
            classes[target.label(record) or NO_CLASS] += n
    return raw, classes


_URL = re.compile(r"https?://\S+")
_BYTES = re.compile(r"""b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*\"""")
_NUMBER = re.compile(r"(?<!HTTP )\b\d+\b")


def reason(error: str | None) -> str:
    """An error message with its particulars (URLs, byte strings, sizes) masked, so that
    failures of the same cause group together.

    >>> reason("OpenCV could not decode 8292 bytes (starts b'\\\\xff\\\\xd8')")
    "OpenCV could not decode N bytes (starts b'…')"
    >>> reason("HTTP 404")
    'HTTP 404'
    """
    if not error:
        return ""
    return _NUMBER.sub("N", _BYTES.sub("b'…'", _URL.sub("<url>", error))).strip()


def failures(table: pa.Table, fine: Iterable[str] = (Status.OK,)) -> list[dict]:
    """The statuses that are not ``fine``, largest first, each with its most common reason.

    Needs the columns ``status`` and ``error``.

    >>> t = pa.table({"status": ["ok", "not_found", "bad_image", "bad_image"],
    ...               "error": [None, "HTTP 404", "could not decode 12 bytes", "could not decode 99 bytes"]})
    >>> [(f["status"], f["count"], f["reason"], f["reason_count"]) for f in failures(t)]
    [('bad_image', 2, 'could not decode N bytes', 2), ('not_found', 1, 'HTTP 404', 1)]
    """
    bad = table.filter(pc.invert(pc.is_in(table["status"], pa.array(list(fine), pa.string()))))
    reasons: dict[str, Counter] = {}
    for record, n in distinct(bad, ["status", "error"]):
        reasons.setdefault(record["status"] or MISSING, Counter())[reason(record["error"])] += n
    out = []
    for status, by_reason in reasons.items():
        top, n = ranked(by_reason)[0]
        out.append({"status": status, "count": sum(by_reason.values()), "reason": top, "reason_count": n})
    return sorted(out, key=lambda f: (-f["count"], f["status"]))


def image_sizes(statuses: pa.Table) -> dict[str, np.ndarray]:
    """Original widths, heights and width/height ratios of the images whose status is ``ok``.

    >>> s = image_sizes(pa.table({"status": ["ok", "ok", "not_found"], "width": [600, 300, None],
    ...                           "height": [300, 600, None]}))
    >>> s["width"].tolist(), s["ratio"].tolist()
    ([600, 300], [2.0, 0.5])
    """
    ok = statuses.filter(
        pc.and_(
            pc.equal(statuses["status"], Status.OK.value),
            pc.and_(pc.is_valid(statuses["width"]), pc.is_valid(statuses["height"])),
        )
    )
    ok = ok.filter(pc.greater(ok["height"], 0))
    width = ok["width"].to_numpy().astype(np.int64)
    height = ok["height"].to_numpy().astype(np.int64)
    return {"width": width, "height": height, "ratio": width / np.maximum(height, 1)}


def random_slots(valid: Sequence[bool] | np.ndarray, k: int, seed: int) -> list[int]:
    """Up to ``k`` slots drawn without replacement among the valid ones, in slot order.

    >>> random_slots([True, False, True, True], 2, seed=0) == random_slots([True, False, True, True], 2, seed=0)
    True
    >>> random_slots([False, True], 5, seed=1)
    [1]
    """
    candidates = np.flatnonzero(np.asarray(valid, dtype=bool))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
    return sorted(int(s) for s in chosen)


def class_slots(
    labels: Sequence[str | None], classes: Sequence[str], per_class: int, seed: int
) -> dict[str, list[int]]:
    """For each class, up to ``per_class`` positions of ``labels`` holding it (seeded, in order).

    >>> class_slots(["a", "b", None, "a", "a"], ["a", "b", "c"], 2, seed=0)["b"]
    [1]
    >>> {c: len(s) for c, s in class_slots(["a", "b", None, "a", "a"], ["a", "b", "c"], 2, seed=0).items()}
    {'a': 2, 'b': 1, 'c': 0}
    """
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {c: [] for c in classes}
    for i, label in enumerate(labels):
        if label in by_class:
            by_class[label].append(i)
    out = {}
    for cls in classes:
        positions = np.asarray(by_class[cls], dtype=np.int64)
        chosen = rng.choice(positions, size=min(per_class, len(positions)), replace=False) if len(positions) else []
        out[cls] = sorted(int(p) for p in chosen)
    return out


def grid_classes(target: Target, labels: Iterable[str | None], limit: int) -> list[str]:
    """The classes of the per-class grid: the target's fixed ones, else its ``limit`` most
    frequent labels.

    >>> from metdata.core.targets import builtin
    >>> grid_classes(builtin("object-type"), ["Glass", "Metalwork", None, "Glass"], 8)
    ['Glass', 'Metalwork']
    """
    if target.classes:
        return list(target.classes)
    return [str(label) for label, _ in ranked(Counter(x for x in labels if x is not None))[:limit]]
