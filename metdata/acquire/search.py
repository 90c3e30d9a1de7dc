"""Candidate ids through ``/v1.1/search``: every query paged to its exact total, split when over the window.

Each request is one paced ``lookup.get`` (the API host's budget, a block pauses it like any
lookup, transient answers retried). A query's pages must add up to its total; a query over the
10,000-result window is split (``searchquery.split_options``) into sub-queries whose totals add
up exactly, recursively. Any page or split that does not add up is an error naming the query:
nothing is lost quietly. What the queries and splits were is returned for ``ids/_listing.json``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from metdata.acquire.lookup import LookupOptions, get, new_session
from metdata.core.progress import Progress
from metdata.core.searchquery import (
    PAGE,
    WINDOW,
    Query,
    SearchQueryError,
    check_page,
    pages,
    shortfall,
    shown,
    split_options,
    unique,
)
from metdata.core.statuses import Status
from metdata.errors import UserError
from metdata.net.pacing import Pacer

log = logging.getLogger(__name__)


class SearchError(UserError):
    """The search could not be read completely; the message names the query and what to do."""


#: More results than the Met's whole index could hold (536,265 in 2026): not the Met's answer.
MAX_TOTAL = 5_000_000
#: The most requests one ``ids`` run spends on the search: paging the whole index with its splits
#: takes about 1,200; a service whose totals keep splitting past this is not answering truthfully.
MAX_REQUESTS = 20_000


def search_url(api: str) -> str:
    """The search endpoint of an API base URL ending in ``/v1``: ``.../v1.1/search``.

    >>> search_url("https://collectionapi.metmuseum.org/public/collection/v1/")
    'https://collectionapi.metmuseum.org/public/collection/v1.1/search'

    Raises:
        SearchError: the URL does not end in ``/v1`` (the search's place cannot be derived).
    """
    base = api.rstrip("/")
    if not base.endswith("/v1") or "?" in base or "#" in base:
        raise SearchError(
            f"--api {api!r} does not end in /v1, so the search (at .../v1.1/search beside it) cannot be found: "
            "give the API base URL, like https://collectionapi.metmuseum.org/public/collection/v1"
        )
    return base + ".1/search"


@dataclass
class Searched:
    """One query's outcome: its total, its split (sub-queries, recursively) and its ids."""

    query: str
    total: int
    by: str | None = None
    split: list[Searched] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)

    def record(self) -> dict:
        """What ``ids/_listing.json`` keeps of it (without the ids)."""
        out: dict = {"query": self.query, "total": self.total}
        if self.split:
            out["split_by"] = self.by
            out["split"] = [s.record() for s in self.split]
        return out


class Searcher:
    """Reads search queries through one session within the budget; counts its requests."""

    def __init__(self, options: LookupOptions, pacer: Pacer, progress: Progress | None = None) -> None:
        self.url = search_url(options.api)
        self.options = options
        self.pacer = pacer.bind()
        self.requests = 0
        self.progress = progress

    def page(self, session, query: Query, offset: int, limit: int = PAGE) -> tuple[object, object]:
        """One page: (its total, its objectIDs), checked to be the search's answer.

        Raises:
            SearchError: unreachable, blocked past the retries, or an answer that is not a search page.
        """
        if self.requests >= MAX_REQUESTS:
            raise SearchError(
                f"search query {shown(query.text)}: more than {MAX_REQUESTS} search requests, and its splits still do "
                "not fit the window: give narrower queries (--search), or check --api"
            )
        params = [*query.params, ("offset", str(offset)), ("limit", str(limit))]
        answer, attempts = get(session, self.url, self.options, self.pacer, params=dict(params))
        self.requests += attempts
        payload = answer.payload
        if answer.outcome is Status.OK and isinstance(payload, dict) and "total" in payload:
            total = payload["total"]
            if type(total) is not int or not 0 <= total <= MAX_TOTAL:
                raise SearchError(
                    f"search query {shown(query.text)}: the answer's total {str(total)[:40]} is no count of the "
                    f"Met's objects (0 to {MAX_TOTAL}): is --api the Met API?"
                )
            return total, payload.get("objectIDs")
        if answer.outcome is Status.BLOCKED:
            hint = "the Met's bot protection blocked this address; wait (up to an hour), lower --rate, rerun"
        elif answer.outcome is Status.TRANSIENT:
            hint = "the API is unreachable or failing; check --api and the network, then rerun"
        else:
            hint = "is --api the API base URL, like https://collectionapi.metmuseum.org/public/collection/v1?"
        error = answer.error or "not a search answer"
        raise SearchError(
            f"search query {shown(query.text)} at {self.url} failed ({answer.outcome.value}: {error}): {hint}"
        )

    def total(self, session, query: Query) -> int:
        """A query's total (one request of one id; ``metdata plan``)."""
        return self.page(session, query, 0, 1)[0]

    def search(self, session, query: Query, first: tuple[object, object] | None = None) -> Searched:
        """All ids of a query, split while over the window. Its first page (offset 0, a full page)
        gives its total: a query that fits the window costs only its pages.

        Args:
            first: the query's first page (total, objectIDs) if already read.

        Raises:
            SearchError, SearchQueryError: a page or split that does not add up (named).
        """
        total, ids = first if first is not None else self.page(session, query, 0)
        if total > WINDOW:
            return self._split(session, query, total)
        found: set[int] = set()
        for offset in pages(total):
            page_total, ids = (total, ids) if offset == 0 else self.page(session, query, offset)
            found.update(check_page(query, offset, total, page_total, ids))
            if self.progress is not None:
                self.progress.update(len(ids or []))
        if len(found) != total:
            raise SearchQueryError(
                f"search query {shown(query.text)}: its pages hold {len(found)} distinct ids where its total says "
                f"{total} (the order changed between pages?); nothing was written, run the same command again"
            )
        return Searched(query.text, total, ids=found)

    def _split(self, session, query: Query, total: int) -> Searched:
        tried = []
        for by, parts in split_options(query):
            firsts = [self.page(session, part, 0) for part in parts]  # totals, and the first pages kept
            missing = shortfall(total, [t for t, _ in firsts])
            if missing == 0:
                log.info("search %r: %d results split by %s into %d queries", query.text, total, by, len(parts))
                split = [self.search(session, p, f) for p, f in zip(parts, firsts, strict=True) if f[0]]
                found = set().union(*(s.ids for s in split))
                if len(found) != total:  # the parts are disjoint by construction: an id in two is an error
                    raise SearchQueryError(
                        f"search query {shown(query.text)}: its split by {by} holds {len(found)} distinct ids where "
                        f"its total says {total} (the index changed during the search?); run the same command again"
                    )
                return Searched(query.text, total, by, split, found)
            tried.append(f"{by}: {missing:+d}")
        raise SearchQueryError(
            f"search query {shown(query.text)} has {total} results, more than the {WINDOW} one query can page "
            f"through, and no split adds up to it (results missing by {'; '.join(tried) or 'no way left'}): "
            "narrow it yourself, e.g. add departmentId=N or dateBegin=..&dateEnd=.., into queries under "
            f"{WINDOW} results each"
        )


def search_all(queries: list[Query], options: LookupOptions, pacer: Pacer) -> tuple[list[Searched], int]:
    """Every query's ids (``Searcher.search``) and the requests it took; the same query given twice
    (``searchquery.unique``) is read once. Nothing is returned unless every query was read completely.

    Raises:
        SearchError, SearchQueryError: named, with what to do.
    """
    done = []
    with new_session(1) as session:
        searcher = Searcher(options, pacer)
        for query in unique(queries):
            first = searcher.page(session, query, 0)
            with Progress(first[0], f"search {query.text}") as progress:
                searcher.progress = progress
                done.append(searcher.search(session, query, first))
    return done, searcher.requests


def totals(queries: list[Query], options: LookupOptions, pacer: Pacer) -> tuple[list[int], int]:
    """Each query's total (one request each; the same query given twice is asked once) and the
    requests it took (``metdata plan``)."""
    with new_session(1) as session:
        searcher = Searcher(options, pacer)
        asked = {q.key: searcher.total(session, q) for q in unique(queries)}
        found = [asked[q.key] for q in queries]
    return found, searcher.requests


def snapshot_record(api: str, target: str | None, done: list[Searched], requests: int, added_to: int | None) -> dict:
    """The ``search`` entry of ``ids/_listing.json``: the target, each query with its total and
    split, how many distinct ids they gave, the requests, when, and (with ``--add``) the size of
    the listing merged into."""
    union = set().union(*(s.ids for s in done)) if done else set()
    return {
        "api": api,
        "target": target,
        "taken_at": dt.datetime.now(dt.UTC).isoformat(),
        "queries": [s.record() for s in done],
        "distinct_ids": len(union),
        "requests": requests,
        "added_to_listing_of": added_to,
    }
