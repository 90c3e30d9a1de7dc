"""Search queries of ``/v1.1/search``: validation, splits and page arithmetic. Pure functions.

The real service drops every filter it does not understand and searches everything instead
(``departmentId=999``, ``hasImages=True``, ``isPublicDomain=true`` and a lone ``dateBegin`` all
answer the whole index; so do an empty ``medium=|`` and a query whose only filter is ``q=``,
``q=*`` or a flag saying where ``q`` looks): a query is therefore checked here, before any request
(ASCII digits only in numbers, at most ``MAX_QUERY_CHARS``), and refused with the fix. It also
answers at most 10,000 results per query (``WINDOW``), 500 per page
(``PAGE``): a query with more is split into sub-queries whose totals must add up exactly to
the parent's (``split_options`` lists the ways, in the order they are tried; ``shortfall``
checks one), and each page is checked against the query's total (``check_page``), so nothing
is lost quietly.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from metdata.core.schema import DEPARTMENTS, MAX_OBJECT_ID
from metdata.errors import UserError

#: The most results one query answers (``offset + limit`` stops there).
WINDOW = 10_000
#: The most ids one page holds (a larger ``limit`` is capped silently).
PAGE = 500
#: Filters whose value is the text ``true`` or ``false`` (case-sensitive: ``True`` is dropped).
FLAGS = ("isHighlight", "isOnView", "hasImages", "title", "tags", "artistOrCulture")
#: Flags that only say where ``q`` looks: no filter without a ``q``.
SCOPES = ("title", "tags", "artistOrCulture")
#: Every filter the service reads; anything else would be dropped silently.
FILTERS = ("q", *FLAGS, "departmentId", "medium", "geoLocation", "dateBegin", "dateEnd")
#: Parameters the client sets itself.
PAGING = ("offset", "limit")
DEPARTMENT_IDS = tuple(d for d, _ in DEPARTMENTS)
#: The longest query accepted: far over any real filter set, well under what a URL may hold (the
#: service answers a 70 KB query with HTTP 414).
MAX_QUERY_CHARS = 2_000
#: A year: ASCII digits only (``str.isdigit`` also takes '²' and '٣', which ``int`` refuses or reads).
YEAR = re.compile(r"-?[0-9]{1,12}")
DEPARTMENT = re.compile(r"[0-9]{1,3}")
#: ``q`` values that match everything: with no other filter, the whole index.
MATCH_ALL = ("", "*")
#: Date windows tried, in order, for a query over the window with no date of its own: a split that
#: holds only if every object's dates fall inside one window (checked by the totals, never assumed).
DATE_WINDOWS = ((-400_000, -1), (0, 999), (1000, 1499), (1500, 1799), (1800, 1899), (1900, 2100))


class SearchQueryError(UserError):
    """A search query the service would misread; the message names it and the fix."""


def shown(text: str, limit: int = 120) -> str:
    """A query for a message: quoted, cut to ``limit`` characters.

    >>> shown("q=" + "a" * 200)[-25:]
    "aaaa'... (202 characters)"
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


@dataclass(frozen=True)
class Query:
    """One search query: its parameters, in the order given.

    >>> Query.parse("departmentId=6&medium=Paintings").text
    'departmentId=6&medium=Paintings'
    """

    params: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        """The query string, readable (spaces and ``|`` kept; requests encode it themselves).

        >>> Query.parse("q=album leaf&medium=A|B").text
        'q=album leaf&medium=A|B'
        """
        return urlencode(self.params, safe=" |", quote_via=quote)

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        """What makes two queries the same search: their parameters in any order.

        >>> Query.parse("medium=Paintings&departmentId=11").key == Query.parse("departmentId=11&medium=Paintings").key
        True
        """
        return tuple(sorted(self.params))

    def get(self, name: str) -> str | None:
        """The value of a parameter, or None."""
        return dict(self.params).get(name)

    def with_(self, **more: str) -> Query:
        """This query with more parameters (replacing the same names).

        >>> Query.parse("q=x").with_(hasImages="true").text
        'q=x&hasImages=true'
        """
        kept = tuple((k, v) for k, v in self.params if k not in more)
        return Query(kept + tuple(more.items()))

    @classmethod
    def parse(cls, text: str) -> Query:
        """Check a query string against what the service reads; see ``check``.

        Raises:
            SearchQueryError: a filter the service would drop or misread (named, with the fix).
        """
        if not isinstance(text, str) or not text.strip():
            raise SearchQueryError(
                "an empty search query would answer the whole index: give filters such as "
                "'departmentId=6&medium=Paintings', or take every id with 'metdata ids' (no --search)"
            )
        if len(text) > MAX_QUERY_CHARS:
            raise SearchQueryError(
                f"search query {shown(text)} is longer than {MAX_QUERY_CHARS} characters, more than a URL "
                "carries: give shorter queries (several --search options are searched as a union)"
            )
        try:
            pairs = parse_qsl(text.strip().lstrip("?"), keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise SearchQueryError(
                f"search query {shown(text)} is not a query string ({exc}): write NAME=VALUE joined by '&', "
                "e.g. 'departmentId=6&medium=Paintings'"
            ) from exc
        query = cls(tuple(pairs))
        check(query, text)
        return query


def unique(queries: list[Query]) -> list[Query]:
    """The queries without repeats (``Query.key``), first occurrence kept, in order.

    >>> [q.text for q in unique([Query.parse("q=a"), Query.parse("q=b"), Query.parse("q=a")])]
    ['q=a', 'q=b']
    """
    seen: dict = {}
    for query in queries:
        seen.setdefault(query.key, query)
    return list(seen.values())


def _suggest(name: str) -> str:
    folded = {f.lower(): f for f in FILTERS}
    if name.lower() in folded:
        return f"write {folded[name.lower()]!r} (names are case-sensitive)"
    close = difflib.get_close_matches(name, FILTERS, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"the filters are {', '.join(FILTERS)}"


def check(query: Query, source: str | None = None) -> None:
    """Refuse what the service would drop silently or read otherwise than meant.

    >>> check(Query.parse("hasImages=true&departmentId=11"))
    >>> check(Query((("hasImages", "True"),)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    metdata.core.searchquery.SearchQueryError: search query 'hasImages=True': hasImages='True' would be dropped ...

    Raises:
        SearchQueryError: an unknown or repeated name, paging set by hand, a flag other than
            ``true``/``false``, an unknown department id, a lone or non-integer date, an empty value.
    """
    where = f"search query {shown(source or query.text)}"
    seen: set[str] = set()
    for name, value in query.params:
        if name in PAGING:
            raise SearchQueryError(f"{where}: {name} is set by metdata (it pages through every result); remove it")
        if name not in FILTERS:
            raise SearchQueryError(
                f"{where}: {name!r} is not a search filter, and the service would drop it silently "
                f"and search everything; {_suggest(name)}"
            )
        if name in seen:
            raise SearchQueryError(f"{where}: {name} is given twice; give it once (medium takes 'A|B')")
        seen.add(name)
        if value.strip() == "" and name != "q":
            raise SearchQueryError(f"{where}: {name} has no value; give one or remove it")
        if name in FLAGS and value not in ("true", "false"):
            fix = f"write {name}={value.strip().lower()}" if value.strip().lower() in ("true", "false") else ""
            raise SearchQueryError(
                f"{where}: {name}={value!r} would be dropped silently (flags are exactly 'true' or 'false', "
                f"lower-case); {fix or f'write {name}=true or {name}=false'}"
            )
        if name == "departmentId" and not (DEPARTMENT.fullmatch(value) and int(value) in DEPARTMENT_IDS):
            raise SearchQueryError(
                f"{where}: departmentId={value!r} is no department, and the service would drop it and "
                f"search everything; use one of {', '.join(map(str, DEPARTMENT_IDS))} "
                "(GET /v1/departments names them)"
            )
        if name in ("dateBegin", "dateEnd") and not YEAR.fullmatch(value):
            raise SearchQueryError(
                f"{where}: {name}={value[:40]!r} is not a year; write a whole number in ASCII digits, e.g. 1600 or -500"
            )
        if name in ("medium", "geoLocation") and not any(part.strip() for part in value.split("|")):
            raise SearchQueryError(
                f"{where}: {name}={value!r} names nothing, and the service would drop it and search everything; "
                f"give a value, e.g. {name}={'Paintings' if name == 'medium' else 'France'}, or remove it"
            )
    dates = {"dateBegin", "dateEnd"} & seen
    if len(dates) == 1:
        (given,) = dates
        other = "dateEnd" if given == "dateBegin" else "dateBegin"
        raise SearchQueryError(
            f"{where}: {given} without {other} would be dropped silently; give both, e.g. dateBegin=1600&dateEnd=1700"
        )
    if dates and int(query.get("dateBegin")) > int(query.get("dateEnd")):
        raise SearchQueryError(f"{where}: dateBegin is after dateEnd; swap them")
    if not (seen - set(SCOPES) - {"q"}) and (query.get("q") or "").strip() in MATCH_ALL:
        why = "q matches everything" if "q" in seen else f"{', '.join(SCOPES)} only say where q looks"
        raise SearchQueryError(
            f"{where} has no filter that narrows it ({why}), so it would answer the whole index: give q=WORD or "
            "filters such as departmentId=6&medium=Paintings, or take every id with 'metdata ids' (no --search)"
        )


def split_options(query: Query) -> list[tuple[str, list[Query]]]:
    """The ways to split a query over the window, in the order they are tried: by department (if
    it has none), ``hasImages``, ``isOnView``, ``isHighlight`` (each if not set), then date windows
    (halves of its own window, else ``DATE_WINDOWS``). Each is (what it splits by, sub-queries);
    a way holds only if the sub-totals add up exactly to the parent's (``shortfall``).

    >>> [(by, len(parts)) for by, parts in split_options(Query.parse("departmentId=6&hasImages=true"))]
    [('isOnView', 2), ('isHighlight', 2), ('date', 6)]
    """
    ways: list[tuple[str, list[Query]]] = []
    if query.get("departmentId") is None:
        ways.append(("departmentId", [query.with_(departmentId=str(d)) for d in DEPARTMENT_IDS]))
    for flag in ("hasImages", "isOnView", "isHighlight"):
        if query.get(flag) is None:
            ways.append((flag, [query.with_(**{flag: v}) for v in ("true", "false")]))
    begin, end = query.get("dateBegin"), query.get("dateEnd")
    if begin is None:
        ways.append(("date", [query.with_(dateBegin=str(b), dateEnd=str(e)) for b, e in DATE_WINDOWS]))
    elif int(end) > int(begin):
        middle = (int(begin) + int(end)) // 2
        halves = [(int(begin), middle), (middle + 1, int(end))]
        ways.append(("date", [query.with_(dateBegin=str(b), dateEnd=str(e)) for b, e in halves]))
    return ways


def shortfall(total: int, parts: list[int]) -> int:
    """How many of the parent's results the sub-totals miss (negative: they count some twice).

    >>> shortfall(12, [5, 7]), shortfall(12, [5, 6]), shortfall(12, [6, 7])
    (0, 1, -1)
    """
    return total - sum(parts)


def pages(total: int) -> list[int]:
    """The offsets of the pages that hold a query's results (within the window).

    >>> pages(0), pages(500), pages(1201), len(pages(10_000))
    ([], [0], [0, 500, 1000], 20)
    """
    return list(range(0, min(total, WINDOW), PAGE))


def page_requests(total: int) -> int:
    """Requests to read a query of ``total`` results that fits the window: its pages, or one to
    learn that it is empty.

    >>> page_requests(0), page_requests(1), page_requests(9_999)
    (1, 1, 20)
    """
    return max(1, len(pages(total)))


def check_page(query: Query, offset: int, total: int, page_total: object, ids: object) -> list[int]:
    """The ids of one page, checked against what the query's total says it must hold.

    Args:
        query: the query (named in errors).
        offset: where the page starts.
        total: the query's total, from its first page.
        page_total: this page's ``total``.
        ids: this page's ``objectIDs`` (a list, or None past the end).

    Raises:
        SearchQueryError: a total that changed between pages, a null or short page before the
            total is reached (the window cut short), a page longer than asked, or ids that are not
            integers from 1 to ``schema.MAX_OBJECT_ID`` (as ``lookup.checked_ids``).

    >>> check_page(Query.parse("q=a"), 500, 501, 501, [7])
    [7]
    """
    where = f"search query {shown(query.text)}"
    if page_total != total:
        raise SearchQueryError(
            f"{where}: its total changed from {total} to {page_total} between pages (the index "
            "changed during the search); run the same command again"
        )
    expected = min(PAGE, total - offset)
    got = 0 if ids is None else len(ids) if isinstance(ids, list) else -1
    if got == -1:
        raise SearchQueryError(f"{where}: the page at offset {offset} holds no id list; is --api the Met API?")
    if got != expected:
        raise SearchQueryError(
            f"{where}: the page at offset {offset} holds {got} ids where its total ({total}) says {expected}: "
            f"{'the result window was cut short' if got < expected else 'more than asked'}, "
            f"{max(0, total - offset - got)} results would be lost; nothing was written, try again later"
        )
    found = [i for i in ids or [] if type(i) is int and 1 <= i <= MAX_OBJECT_ID]  # type(): True is an int too
    if len(found) != got:
        raise SearchQueryError(
            f"{where}: the page at offset {offset} holds ids that are not integers from 1 to {MAX_OBJECT_ID}: "
            "is --api the Met API?"
        )
    return found
