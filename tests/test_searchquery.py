"""Search queries, splits and page arithmetic: pure, plain asserts."""

from __future__ import annotations

import pytest

from metdata.core.schema import DEPARTMENTS, MAX_OBJECT_ID
from metdata.core.searchquery import (
    DATE_WINDOWS,
    Query,
    SearchQueryError,
    check_page,
    page_requests,
    pages,
    shortfall,
    split_options,
    unique,
)


def test_a_valid_query_keeps_its_order_and_reads_back():
    query = Query.parse(
        "departmentId=6&medium=Paintings|Prints&q=album leaf&hasImages=true&dateBegin=-500&dateEnd=1700"
    )
    assert (
        query.text == "departmentId=6&medium=Paintings|Prints&q=album leaf&hasImages=true&dateBegin=-500&dateEnd=1700"
    )
    assert query.get("medium") == "Paintings|Prints" and query.get("isOnView") is None
    assert Query.parse("q=&departmentId=6").params == (("q", ""), ("departmentId", "6"))
    assert Query.parse("q=a&title=true").get("title") == "true"


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("", "take every id with 'metdata ids'"),
        ("   ", "take every id with 'metdata ids'"),
        ("departmentId=2", "use one of 1, 3, 4"),
        ("departmentId=20", "is no department"),
        ("departmentId=6.0", "is no department"),
        ("isOnView=yes", "write isOnView=true or isOnView=false"),
        ("isHighlight=TRUE", "write isHighlight=true"),
        ("tags=1", "write tags=true or tags=false"),
        ("HasImages=true", "write 'hasImages' (names are case-sensitive)"),
        ("departmentIds=6", "did you mean 'departmentId'?"),
        ("publicDomain=true", "the filters are q, isHighlight"),
        ("dateEnd=1700", "dateEnd without dateBegin"),
        ("dateBegin=1700&dateEnd=1600", "dateBegin is after dateEnd"),
        ("dateBegin=1.5&dateEnd=1600", "is not a year"),
        ("offset=5", "offset is set by metdata"),
        ("medium=", "medium has no value"),
        ("q=a&q=b", "q is given twice"),
        # str.isdigit takes these, int() refuses or misreads them: ASCII digits only
        ("departmentId=\u00b2", "is no department"),
        ("departmentId=\u0663", "is no department"),
        ("dateBegin=--5&dateEnd=10", "is not a year"),
        ("dateBegin=\u00b2&dateEnd=3", "is not a year"),
        ("dateBegin=1&dateEnd=\u0663", "is not a year"),
        ("dateBegin= 5&dateEnd=10", "is not a year"),
        # dropped by the service, the whole index answered
        ("medium=|", "medium='|' names nothing"),
        ("medium= | ", "names nothing"),
        ("geoLocation=|", "geoLocation='|' names nothing"),
        ("q=", "q matches everything"),
        ("q=*", "q matches everything"),
        ("q= * ", "q matches everything"),
        ("title=true", "only say where q looks"),
        ("q=&tags=true&artistOrCulture=true", "has no filter that narrows it"),
        ("q=" + "a" * 70_000, "longer than 2000 characters"),
    ],
)
def test_what_the_service_would_drop_is_refused_with_the_fix(text, fix):
    with pytest.raises(SearchQueryError, match="search query") as raised:
        Query.parse(text)
    assert fix in str(raised.value)


def test_a_long_query_is_echoed_cut():
    with pytest.raises(SearchQueryError) as raised:
        Query.parse("q=" + "a" * 70_000)
    assert len(str(raised.value)) < 500
    with pytest.raises(SearchQueryError) as raised:
        Query.parse("q=" + "a" * 1_500 + "&bogus=1")
    assert len(str(raised.value)) < 500


def test_the_same_query_twice_is_one_query():
    queries = [Query.parse(t) for t in ("medium=Paintings&departmentId=11", "q=x", "departmentId=11&medium=Paintings")]
    assert [q.text for q in unique(queries)] == ["medium=Paintings&departmentId=11", "q=x"]


def test_split_options_in_order_and_only_for_what_is_unset():
    ways = split_options(Query.parse("q=x"))
    assert [by for by, _ in ways] == ["departmentId", "hasImages", "isOnView", "isHighlight", "date"]
    departments = ways[0][1]
    assert [q.get("departmentId") for q in departments] == [str(d) for d, _ in DEPARTMENTS]
    assert all(q.get("q") == "x" for q in departments)
    assert [q.get("hasImages") for q in ways[1][1]] == ["true", "false"]
    assert [(q.get("dateBegin"), q.get("dateEnd")) for q in ways[4][1]] == [(str(b), str(e)) for b, e in DATE_WINDOWS]
    narrow = split_options(
        Query.parse("departmentId=9&hasImages=true&isOnView=false&isHighlight=false&dateBegin=1800&dateEnd=1899")
    )
    assert [(by, [(q.get("dateBegin"), q.get("dateEnd")) for q in parts]) for by, parts in narrow] == [
        ("date", [("1800", "1849"), ("1850", "1899")])
    ]
    one_year = "departmentId=9&hasImages=true&isOnView=false&isHighlight=false&dateBegin=1800&dateEnd=1800"
    assert split_options(Query.parse(one_year)) == []
    for _, parts in ways:  # every sub-query is itself a valid query
        for part in parts:
            assert Query.parse(part.text) == part


def test_totals_arithmetic():
    assert shortfall(10_001, [5_000, 5_001]) == 0
    assert shortfall(10_001, [5_000, 5_000]) == 1 and shortfall(10_001, [5_001, 5_001]) == -1
    assert pages(0) == [] and pages(1) == [0] and pages(501) == [0, 500]
    assert pages(10_000)[-1] == 9_500 and pages(25_000) == pages(10_000)  # the window
    assert page_requests(0) == 1 and page_requests(10_000) == 20


def test_check_page_accepts_only_what_the_total_says():
    query = Query.parse("q=x")
    assert check_page(query, 0, 3, 3, [3, 1, 2]) == [3, 1, 2]
    assert check_page(query, 500, 1000, 1000, list(range(1, 501))) == list(range(1, 501))
    with pytest.raises(SearchQueryError, match="total changed from 3 to 4"):
        check_page(query, 0, 3, 4, [1, 2, 3])
    with pytest.raises(SearchQueryError, match=r"holds 0 ids where its total \(3\) says 3: the result window was cut"):
        check_page(query, 0, 3, 3, None)
    with pytest.raises(SearchQueryError, match=r"holds 2 ids where its total \(3\) says 3"):
        check_page(query, 0, 3, 3, [1, 2])
    with pytest.raises(SearchQueryError, match="more than asked"):
        check_page(query, 0, 3, 3, [1, 2, 3, 4])
    with pytest.raises(SearchQueryError, match="not integers from 1 to"):
        check_page(query, 0, 3, 3, [1, True, 3])
    assert check_page(query, 0, 2, 2, [5, MAX_OBJECT_ID]) == [5, MAX_OBJECT_ID]
    for huge in (MAX_OBJECT_ID + 1, 2**63 - 1, 10**20):  # 10**20 overflowed the listing; 2**63-1 ingest refused
        with pytest.raises(SearchQueryError, match="not integers from 1 to"):
            check_page(query, 0, 2, 2, [5, huge])
    with pytest.raises(SearchQueryError, match="no id list"):
        check_page(query, 0, 3, 3, "1,2,3")
