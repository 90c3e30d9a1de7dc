"""Training targets: which objects belong, and which class each one is. Pure functions.

A target is data (a small TOML file, or a built-in one written the same way):

```toml
name = "painting-culture"
description = "..."
fields = ["culture", "country", "artistNationality"]   # the first non-empty one is used
min_count = 1                                           # per class, checked on a dataset

[select]                              # who belongs: any of these matches (omit: everyone)
classification = { exact = ["Paintings"] }
objectName = { exact = ["Painting", "Hanging scroll"] }

[aliases]                             # raw value -> another raw value, before the rules
"Metal-Ornaments" = "Metalwork"

[[rules]]                             # first match wins; unmatched values are out of the target
class = "India"
contains = ["india"]                  # also: exact = [...], regex = "..."

[[rules]]                             # class "*": the matched text is the class (a regex's first
class = "*"                           # group, else its match, else the value), then aliased
regex = "^([^-]+)"

[search]                              # optional: how `metdata ids --target` finds the candidates
queries = ["departmentId=6&medium=Paintings&hasImages=true"]   # /v1.1/search query strings
note = "why these queries find every object the target selects"
```

Matching ignores case and surrounding spaces. The built-in ``painting-culture`` is the blog's
four classes with rules that fit the real data: paintings are objects classified "Paintings"
or whose objectName is of the painting kind (the American Wing leaves classification empty;
Islamic Art files Indian album paintings under "Codices"); the culture comes from
``culture``, then ``country``, then ``artistNationality``; India is any culture containing
"India" (so also "Indian").

A table is labelled with :func:`label_table`: each distinct combination of the target's
columns once, mapped back to the rows.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metdata.core.schema import FIELDS
from metdata.core.searchquery import Query, SearchQueryError
from metdata.errors import UserError

KINDS = ("exact", "contains", "regex")


class TargetError(UserError):
    """A target definition is wrong, or does not fit the dataset."""


@dataclass(frozen=True)
class Matcher:
    """One way to match a value: ``exact`` or ``contains`` (lists), or ``regex``."""

    exact: frozenset[str] = frozenset()
    contains: tuple[str, ...] = ()
    regex: re.Pattern | None = None

    def __call__(self, value: str) -> bool:
        return self.match(value) is not None

    def match(self, value: str) -> str | None:
        """The matched text (a regex's first group or whole match; else the value), or None."""
        folded = value.strip().lower()
        if folded in self.exact or any(part in folded for part in self.contains):
            return value.strip()
        found = self.regex.search(value.strip()) if self.regex else None
        if found:
            return (found.group(1) if found.re.groups else found.group(0)).strip()
        return None


@dataclass(frozen=True)
class Rule:
    """Values matching ``matcher`` belong to class ``cls``."""

    cls: str
    matcher: Matcher


@dataclass(frozen=True)
class SearchSpec:
    """How ``metdata ids --target`` finds a target's candidates: checked search queries (none: the
    search saves little for this target) and a free-text note saying why."""

    queries: tuple[Query, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Target:
    """A named target: the selection, the label field(s), aliases and rules, and its search."""

    name: str
    description: str = ""
    fields: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    select: tuple[tuple[str, Matcher], ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    min_count: int = 1
    search: SearchSpec = SearchSpec()

    @property
    def classes(self) -> tuple[str, ...]:
        """The fixed classes, sorted (``*`` rules add classes that depend on the data)."""
        return tuple(sorted({r.cls for r in self.rules if r.cls != "*"}))

    @property
    def columns(self) -> list[str]:
        """The metadata columns the target reads."""
        return sorted({*self.fields, *(name for name, _ in self.select)})

    def belongs(self, record: Mapping) -> bool:
        """Whether a record is selected (before its label is looked at)."""
        return not self.select or any(match(record.get(name) or "") for name, match in self.select)

    def raw_value(self, record: Mapping) -> str:
        """The first non-empty label field, after aliases ("" if none)."""
        for name in self.fields:
            value = (record.get(name) or "").strip()
            if value:
                return self.aliases.get(value.lower(), value)
        return ""

    def label(self, record: Mapping) -> str | None:
        """The record's class, or None if it is outside the target.

        >>> target = builtin("painting-culture")
        >>> target.label({"classification": "Codices", "objectName": "Illustrated album leaf",
        ...               "culture": "", "country": "India"})
        'India'
        >>> target.label({"classification": "Paintings", "culture": "", "artistNationality": "German"}) is None
        True
        """
        if not self.belongs(record):
            return None
        value = self.raw_value(record)
        if not value:
            return None
        for rule in self.rules:
            matched = rule.matcher.match(value)
            if matched:
                # a "*" class is data: merge its aliases too ("Metal" -> "Metalwork")
                return self.aliases.get(matched.lower(), matched) if rule.cls == "*" else rule.cls
        return None

    def check_counts(self, counts: Mapping[str, int]) -> None:
        """Check class counts on a dataset.

        Raises:
            TargetError: a class with no example, or fewer than ``min_count``.
        """
        if not any(counts.values()):
            raise TargetError(f"target {self.name!r}: no object falls in it; check its [select] and rules")
        empty = [c for c in self.classes if counts.get(c, 0) == 0]
        if empty:
            raise TargetError(
                f"target {self.name!r}: no object falls in class {', '.join(empty)}; "
                "check its rules against the data ('metdata targets' shows the counts)"
            )
        small = {c: n for c, n in counts.items() if n < self.min_count}
        if small:
            raise TargetError(
                f"target {self.name!r}: classes below min_count={self.min_count}: {small}; "
                "ingest more objects, merge classes, or lower min_count"
            )


def label_table(table: pa.Table, target: Target) -> pa.Array:
    """The target's class of each row of ``table`` (null: outside the target), as a string array.

    Each distinct combination of the target's columns is labelled once by :meth:`Target.label` and
    the labels are mapped back to the rows: 500,000 rows hold a few thousand combinations.

    Args:
        table: holds (at least) ``target.columns``.
        target: the target whose rules label the rows.

    Raises:
        KeyError: a column of the target is missing from ``table``.

    >>> t = pa.table({"classification": ["Metal-Ornaments", "", "Metal", None, "Glass"]})
    >>> label_table(t, builtin("object-type")).to_pylist()
    ['Metalwork', None, 'Metalwork', None, 'Glass']
    """
    columns = target.columns
    values: list[list] = []  # per column: its distinct values (null included)
    codes: list[np.ndarray] = []  # per column: each row's index into them
    key = np.zeros(table.num_rows, np.int64)  # each row's combination of the columns so far, numbered 0..k-1
    for name in columns:
        encoded = pc.dictionary_encode(table.column(name).combine_chunks(), null_encoding="encode")
        values.append(encoded.dictionary.to_pylist())
        codes.append(encoded.indices.to_numpy(zero_copy_only=False))
        pairs = pa.array(key * len(values[-1]) + codes[-1])  # < rows x values: no overflow
        key = pc.dictionary_encode(pairs).indices.to_numpy(zero_copy_only=False).astype(np.int64)  # hashing, no sort
    first = np.zeros(int(key.max()) + 1 if len(key) else 0, np.int64)
    first[key] = np.arange(len(key))  # a row of each combination (any one: they hold the same values)
    picked = [[values[j][c] for c in codes[j][first].tolist()] for j in range(len(columns))]
    labels = [target.label(dict(zip(columns, combo, strict=True))) for combo in zip(*picked, strict=True)]
    return pa.array(labels, pa.string()).take(pa.array(key))


def count(target: Target, records: Iterable[Mapping]) -> Counter:
    """How many records fall in each class."""
    return Counter(label for label in map(target.label, records) if label is not None)


def _matcher(spec: object, where: str) -> Matcher:
    if isinstance(spec, str | list):
        spec = {"exact": spec}
    if not isinstance(spec, dict) or not spec or set(spec) - set(KINDS):
        raise TargetError(f'{where}: give a table with {", ".join(KINDS)}, e.g. {{ contains = ["india"] }}')

    def words(key: str) -> list[str]:
        value = spec.get(key, [])
        return [w.strip().lower() for w in ([value] if isinstance(value, str) else value)]

    try:
        regex = re.compile(spec["regex"], re.IGNORECASE) if "regex" in spec else None
    except re.error as exc:
        raise TargetError(f"{where}: bad regex {spec['regex']!r}: {exc}") from exc
    return Matcher(frozenset(words("exact")), tuple(words("contains")), regex)


def _field(name: object, where: str) -> str:
    if name not in FIELDS:
        raise TargetError(f"{where}: unknown field {name!r}; use a metadata field such as culture, classification")
    return name


def _search(spec: object, source: str) -> SearchSpec:
    """The ``[search]`` section: ``queries`` (search query strings, each checked) and ``note``."""
    if spec is None:
        return SearchSpec()
    example = 'queries = ["departmentId=6&medium=Paintings&hasImages=true"], note = "..."'
    if not isinstance(spec, dict) or set(spec) - {"queries", "note"}:
        raise TargetError(f"{source}: [search] takes queries and note, e.g. {example}")
    queries = spec.get("queries", [])
    note = spec.get("note", "")
    if isinstance(queries, str):
        queries = [queries]
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries) or not isinstance(note, str):
        raise TargetError(f"{source}: [search] queries is a list of query strings and note a string, e.g. {example}")
    if not queries and not note:
        raise TargetError(f"{source}: [search] has no queries; add some, or a note saying why there are none")
    checked = []
    for i, text in enumerate(queries):
        try:
            checked.append(Query.parse(text))
        except SearchQueryError as exc:
            raise TargetError(f"{source}: [search] queries[{i}]: {exc}") from exc
    return SearchSpec(tuple(checked), note.strip())


def parse(text: str, source: str = "<target>") -> Target:
    """Build a target from TOML text.

    Raises:
        TargetError: bad TOML, an unknown field, a rule without class or matcher, a search query
            the service would misread.
    """
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{source} is not valid TOML: {exc}") from exc
    if not spec.get("name"):
        raise TargetError(f'{source}: give the target a name, e.g. name = "object-type"')
    fields = spec.get("fields") or []
    if isinstance(fields, str):
        fields = [fields]
    if not fields:
        raise TargetError(f'{source}: give the field(s) that carry the label, e.g. fields = ["culture"]')
    rules = []
    for i, rule in enumerate(spec.get("rules") or []):
        where = f"{source}: rules[{i}]"
        if not rule.get("class"):
            raise TargetError(f'{where} has no class; write class = "..."')
        rules.append(Rule(str(rule["class"]), _matcher({k: v for k, v in rule.items() if k != "class"}, where)))
    if not rules:
        raise TargetError(f'{source}: no [[rules]]; add at least one, e.g. class = "China", contains = ["china"]')
    select = tuple(
        (_field(name, f"{source}: [select]"), _matcher(m, f"{source}: [select].{name}"))
        for name, m in (spec.get("select") or {}).items()
    )
    aliases = {str(k).strip().lower(): str(v) for k, v in (spec.get("aliases") or {}).items()}
    min_count = spec.get("min_count", 1)
    if not isinstance(min_count, int) or min_count < 1:
        raise TargetError(f"{source}: min_count must be a whole number >= 1, got {min_count!r}")
    return Target(
        search=_search(spec.get("search"), source),
        name=str(spec["name"]),
        description=str(spec.get("description", "")),
        fields=tuple(_field(f, f"{source}: fields") for f in fields),
        rules=tuple(rules),
        select=select,
        aliases=aliases,
        min_count=min_count,
    )


PAINTING_CULTURE = """
name = "painting-culture"
description = "The blog's target: a painting's culture among China, Japan, America and India."
fields = ["culture", "country", "artistNationality"]
min_count = 1

[select]
classification = { exact = ["Paintings"] }
objectName = { exact = ["Painting", "Hanging scroll", "Handscroll", "Album leaf", "Illustrated album leaf",
  "Folio from an illustrated manuscript", "Folio from a ragamala series",
  "Folding fan mounted as an album leaf", "Pair of six-panel folding screens", "Fan"] }

[[rules]]
class = "India"
contains = ["india"]

[[rules]]
class = "China"
contains = ["china", "chinese"]

[[rules]]
class = "Japan"
contains = ["japan", "japanese"]

[[rules]]
class = "America"
contains = ["american", "united states"]

[search]
note = '''Paintings anywhere (medium=Paintings matches the classification, European Paintings by American
artists included), the American Wing's paintings (classification "", objectName "Painting": medium=Paintings
misses them), Asian Art's scrolls and album leaves of other classifications (calligraphy hanging scrolls),
and Islamic Art's Indian folios (culture "", country "India", "Codices"). hasImages=true loses no selected
image: an object with a public image always has images.'''
queries = [
  "medium=Paintings&hasImages=true",
  "departmentId=1&q=painting&hasImages=true",
  "departmentId=6&q=scroll&hasImages=true",
  "departmentId=6&q=album leaf&hasImages=true",
  "departmentId=14&geoLocation=India&hasImages=true",
]
"""

OBJECT_TYPE = """
name = "object-type"
description = "What kind of object it is: the classification, with its aliases merged."
fields = ["classification"]
min_count = 1

[aliases]
"metal" = "Metalwork"
"metals" = "Metalwork"
"ceramic" = "Ceramics"
"textile" = "Textiles"

[[rules]]
class = "*"
regex = "^([^-|]+)"

[search]
note = '''Every object has a classification, so every object with an image is a candidate: the search saves
little (370,999 hits for hasImages=true, against 502,886 listed) and costs paging and splits. Load the
Open Access CSV instead (metdata ingest --from-csv URL): the images stage then looks up only the public-domain
rows it selects.'''
"""

BUILTINS = {"painting-culture": PAINTING_CULTURE, "object-type": OBJECT_TYPE}


def builtin(name: str) -> Target:
    """A built-in target by name."""
    return parse(BUILTINS[name], f"built-in target {name!r}")


def resolve(name_or_path: str) -> Target:
    """A built-in target's name, or the path of a TOML file defining one.

    Raises:
        TargetError: neither a built-in name nor a readable target file.
    """
    if name_or_path in BUILTINS:
        return builtin(name_or_path)
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TargetError(
                f"target file {str(path)[:200]!r} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                "save it as UTF-8 (TOML files are UTF-8)"
            ) from exc
        except OSError as exc:
            raise TargetError(f"cannot read target file {str(path)[:200]!r} ({exc.strerror}): check it") from exc
        return parse(text, str(path))
    raise TargetError(
        f"unknown target {name_or_path!r}: use a built-in one ({', '.join(BUILTINS)}) or the path of a .toml file"
    )
