"""The ``/v1.1/search`` endpoint: a compact index built once, its matching and its paging rules.

The rules are the real service's, as probed (``shared/met-api-facts.md``, "Search (v1.1)"):

- a filter the service does not know, misspells or mis-cases is dropped silently and the search
  runs over everything: flags are lower-case ``true``/``false`` only, ``departmentId`` must be
  one of the 19 ids (``999`` or ``abc`` search the whole index), ``isPublicDomain`` is no
  filter, ``dateBegin`` counts only with ``dateEnd``;
- ``medium`` is an exact term, case-insensitive: ``medium=A|B`` keeps an object when A or B
  equals its ``classification`` or one of the terms of its ``medium`` field (split on ``,``,
  ``;`` and `` and ``): ``medium=Paintings`` finds objects classed "Paintings" and not the
  American Wing's paintings, whose classification is "";
- ``q`` ignores case, not accents; each of its words must appear in one of the searched fields;
  ``geoLocation`` terms are matched the same way (case-insensitive substrings) in the place fields;
- without ``q`` (or ``q=*``) results come in object-id order *as text* (``1, 10, 100, ...``);
- ``limit`` 100 by default, 500 at most, 0 or less is the default; ``offset`` below 0 is 0; nothing
  past the 10,000th result; an empty page is ``null``, never ``[]``; ``total`` is exact.

``SearchIndex`` holds, per index record, a department id, three flags and two dates as NumPy
arrays, and each text field as an int32 code into a vocabulary of its distinct lower-cased
values: a word is looked for once per distinct value, not once per object. Its records are in
text order of their ids, so a query's hits are already sorted.
"""

from __future__ import annotations

import array
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from metdata.core.schema import DEPARTMENTS, department_of_record

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_RESULTS = 10_000
#: Query results kept for the next pages of the same query (each at most 8 bytes per index record).
RESULTS_KEPT = 16
#: Literal query strings remembered for ``X-Search-Cache: HIT``.
QUERIES_KEPT = 100_000
KNOWN_DEPARTMENTS = frozenset(i for i, _ in DEPARTMENTS)
#: The fields ``q`` searches, by scope flag (``title=true`` etc.); no flag: all of them.
_ALL_TEXT = ("title", "culture", "artist", "objectName", "classification", "medium", "department", "country", "tags")
_SCOPES = {"title": ("title",), "tags": ("tags",), "artistOrCulture": ("artist", "culture")}
#: Index column -> record field, for the one-valued text fields.
_TEXT_FIELDS = {name: "artistDisplayName" if name == "artist" else name for name in _ALL_TEXT if name != "tags"}
_PLACES = ("country", "city", "state", "region", "subregion", "culture")
_TERM_SPLIT = re.compile(r"[,;]| and ")


def medium_terms(classification: str, medium: str) -> frozenset[str]:
    """The exact terms ``medium=`` matches for one object, lower-cased.

    >>> sorted(medium_terms("Paintings", "Hanging scroll; ink and color on silk"))
    ['color on silk', 'hanging scroll', 'ink', 'paintings']
    >>> sorted(medium_terms("", "Ink, opaque watercolor, and gold on paper"))
    ['gold on paper', 'ink', 'opaque watercolor']
    """
    terms = {t.strip() for t in _TERM_SPLIT.split(medium.lower())}
    terms.add(classification.strip().lower())
    terms.discard("")
    return frozenset(terms)


def _flag(params: Mapping[str, str], name: str) -> bool | None:
    return {"true": True, "false": False}.get(params.get(name, ""))


def _int(params: Mapping[str, str], name: str) -> int | None:
    try:
        return int(params[name])
    except (KeyError, ValueError):
        return None


class _Column:
    """One text field: an int32 code per record into a list of distinct values."""

    def __init__(self) -> None:
        self._codes: dict[object, int] = {}
        self.values: list = []
        self.codes: array.array | np.ndarray = array.array("i")

    def add(self, value: object) -> None:
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        self.codes.append(code)

    def freeze(self, order: np.ndarray) -> None:
        self.codes = np.frombuffer(self.codes, dtype=np.int32)[order]
        self._codes = {}

    def where(self, keep: Callable[[object], bool]) -> np.ndarray:
        """A mask over the records: those whose value passes ``keep``."""
        wanted = np.fromiter((keep(v) for v in self.values), dtype=bool, count=len(self.values))
        return wanted[self.codes]


@dataclass(frozen=True)
class Query:
    """What one query string asks for, once the filters the service would drop are dropped."""

    words: tuple[str, ...]
    scope: tuple[str, ...]
    flags: tuple[tuple[str, bool], ...]
    department: int | None
    medium: frozenset[str] | None
    places: tuple[str, ...] | None
    dates: tuple[int, int] | None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        """Keep what the real service would use of ``params``; drop the rest silently."""
        q = params.get("q", "").strip().lower()
        words = () if q in ("", "*") else tuple(q.split())
        scope = next((fields for flag, fields in _SCOPES.items() if _flag(params, flag)), _ALL_TEXT)
        flags = tuple(
            (name, value)
            for name in ("isHighlight", "isOnView", "hasImages")
            if (value := _flag(params, name)) is not None
        )
        department = _int(params, "departmentId")
        medium = frozenset(m.strip().lower() for m in params["medium"].split("|")) if "medium" in params else None
        places = None
        if "geoLocation" in params:
            places = tuple(g.strip().lower() for g in params["geoLocation"].split("|") if g.strip()) or None
        begin, end = _int(params, "dateBegin"), _int(params, "dateEnd")
        return cls(
            words,
            scope,
            flags,
            department if department in KNOWN_DEPARTMENTS else None,
            medium - {""} if medium is not None and medium - {""} else None,
            places,
            (begin, end) if begin is not None and end is not None else None,
        )


class SearchIndex:
    """Every index record's searchable fields, compact; ``search(params)`` answers a search.

    Args:
        records: the index's records (API dicts), each once.
        has_image: whether the museum holds an image of a record (what ``hasImages`` sees).
    """

    def __init__(self, records: Iterable[Mapping], has_image: Callable[[Mapping], bool]) -> None:
        # typed arrays while building: 4-8 bytes an entry, not a Python object each
        ids, dept, begin, end = array.array("q"), array.array("h"), array.array("i"), array.array("i")
        highlight, on_view, images = array.array("b"), array.array("b"), array.array("b")
        self._columns = {name: _Column() for name in (*_ALL_TEXT, "medium_terms", "places")}
        c = self._columns
        for r in records:
            ids.append(r["objectID"])
            dept.append(department_of_record(r["department"]) or 0)
            highlight.append(bool(r["isHighlight"]))
            on_view.append(bool(r.get("GalleryNumber")))
            images.append(bool(has_image(r)))
            begin.append(r["objectBeginDate"])
            end.append(r["objectEndDate"])
            for name, field in _TEXT_FIELDS.items():
                c[name].add(r[field].lower())
            c["tags"].add("\n".join(t["term"].lower() for t in r.get("tags") or []))
            c["medium_terms"].add(medium_terms(r["classification"], r["medium"]))
            c["places"].add("\n".join(r[f].lower() for f in _PLACES))
        order = np.argsort(np.frombuffer(ids, dtype=np.int64).astype(str), kind="stable")
        self.ids = np.frombuffer(ids, dtype=np.int64)[order]
        self.department = np.frombuffer(dept, dtype=np.int16)[order]
        self.flags = {
            "isHighlight": np.frombuffer(highlight, dtype=np.int8)[order].astype(bool),
            "isOnView": np.frombuffer(on_view, dtype=np.int8)[order].astype(bool),
            "hasImages": np.frombuffer(images, dtype=np.int8)[order].astype(bool),
        }
        self.begin = np.frombuffer(begin, dtype=np.int32)[order]
        self.end = np.frombuffer(end, dtype=np.int32)[order]
        for column in c.values():
            column.freeze(order)
        self._results: OrderedDict[Query, np.ndarray] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def nbytes(self) -> int:
        """Bytes held by the arrays (not the vocabularies)."""
        arrays = [self.ids, self.department, self.begin, self.end, *self.flags.values()]
        return sum(a.nbytes for a in arrays) + sum(c.codes.nbytes for c in self._columns.values())

    def seen(self, query_string: str) -> bool:
        """Whether this literal query string was asked before (``X-Search-Cache: HIT``); remember it."""
        with self._lock:
            hit = query_string in self._seen
            self._seen[query_string] = None
            self._seen.move_to_end(query_string)
            if len(self._seen) > QUERIES_KEPT:
                self._seen.popitem(last=False)
            return hit

    def search(self, params: Mapping[str, str]) -> np.ndarray:
        """Every matching id, in text order of the ids."""
        query = Query.parse(params)
        with self._lock:
            found = self._results.get(query)
            if found is not None:
                self._results.move_to_end(query)
                return found
        found = self.ids_of(query)
        with self._lock:
            self._results[query] = found
            if len(self._results) > RESULTS_KEPT:
                self._results.popitem(last=False)
        return found

    def ids_of(self, query: Query) -> np.ndarray:
        """Every id matching a parsed query, in text order of the ids."""
        keep = np.ones(len(self.ids), dtype=bool)
        c = self._columns
        for word in query.words:
            hit = np.zeros(len(self.ids), dtype=bool)
            for name in query.scope:
                hit |= c[name].where(lambda v, w=word: w in v)
            keep &= hit
        for name, value in query.flags:
            keep &= self.flags[name] == value
        if query.department is not None:
            keep &= self.department == query.department
        if query.medium is not None:
            keep &= c["medium_terms"].where(lambda terms: not terms.isdisjoint(query.medium))
        if query.places is not None:
            keep &= c["places"].where(lambda v: any(p in v for p in query.places))
        if query.dates is not None:
            first, last = query.dates
            keep &= (first <= self.begin) & (self.begin <= self.end) & (self.end <= last)
        return self.ids[keep]


def page(ids: list[int] | np.ndarray, params: Mapping[str, str]) -> dict:
    """Cut one page out of all matching ids, as the real service pages.

    >>> page([1, 2, 3], {"limit": "2", "offset": "2"})
    {'total': 3, 'objectIDs': [3]}
    >>> page([], {})
    {'total': 0, 'objectIDs': None}
    >>> page(list(range(20_000)), {"offset": "9999", "limit": "2"})["objectIDs"]
    [9999]
    """
    limit = _int(params, "limit")
    limit = DEFAULT_LIMIT if limit is None or limit < 1 else min(limit, MAX_LIMIT)
    offset = max(_int(params, "offset") or 0, 0)
    chosen = [int(i) for i in ids[offset : max(offset, min(offset + limit, MAX_RESULTS))]]
    return {"total": len(ids), "objectIDs": chosen or None}
