"""The ``/v1.1/search`` endpoint's matching and paging rules, over a list of records.

Pure functions: the server parses the query string, these decide what matches and which page
is returned. Rules follow the real service: lower-case ``true``/``false`` only (anything else
is ignored), unknown filters ignored, ``limit`` 100 by default and at most 500, nothing past
offset + limit = 10,000, and ``null`` instead of ``[]`` for an empty page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_RESULTS = 10_000


def _flag(params: Mapping[str, str], name: str) -> bool | None:
    return {"true": True, "false": False}.get(params.get(name, ""))


def _int(params: Mapping[str, str], name: str) -> int | None:
    try:
        return int(params[name])
    except (KeyError, ValueError):
        return None


def _contains_any(values: Iterable[str], wanted: list[str]) -> bool:
    text = " ".join(values).lower()
    return any(w in text for w in wanted)


def _tags(record: Mapping) -> list[str]:
    return [t["term"] for t in record.get("tags") or []]


def matches(
    record: Mapping,
    params: Mapping[str, str],
    has_image: Callable[[Mapping], bool],
    department_id: Callable[[Mapping], int | None],
) -> bool:
    """Whether one record matches the query ``q`` and every filter given in ``params``."""
    q = params.get("q", "").strip().lower()
    if _flag(params, "title"):
        fields = [record["title"]]
    elif _flag(params, "tags"):
        fields = _tags(record)
    elif _flag(params, "artistOrCulture"):
        fields = [record["artistDisplayName"], record["culture"]]
    else:
        fields = [
            record[f]
            for f in (
                "title",
                "culture",
                "artistDisplayName",
                "objectName",
                "classification",
                "medium",
                "department",
                "country",
            )
        ]
        fields += _tags(record)
    if q not in ("", "*") and q not in " ".join(fields).lower():
        return False
    for name, value in (
        ("isHighlight", record["isHighlight"]),
        ("isOnView", bool(record.get("GalleryNumber"))),
        ("hasImages", has_image(record)),
    ):
        wanted = _flag(params, name)
        if wanted is not None and wanted != value:
            return False
    dept = _int(params, "departmentId")
    if dept is not None and department_id(record) != dept:
        return False
    if "medium" in params:
        wanted = [m.strip().lower() for m in params["medium"].split("|") if m.strip()]
        if not _contains_any((record["medium"], record["objectName"], record["classification"]), wanted):
            return False
    if "geoLocation" in params:
        wanted = [g.strip().lower() for g in params["geoLocation"].split("|") if g.strip()]
        places = ("country", "city", "state", "region", "subregion", "culture")
        if not _contains_any((record[f] for f in places), wanted):
            return False
    begin, end = _int(params, "dateBegin"), _int(params, "dateEnd")
    inside = begin is None or end is None or begin <= record["objectBeginDate"] <= record["objectEndDate"] <= end
    return inside


def page(ids: list[int], params: Mapping[str, str]) -> dict:
    """Cut one page out of all matching ids, as the real service pages.

    >>> page([1, 2, 3], {"limit": "2", "offset": "2"})
    {'total': 3, 'objectIDs': [3]}
    >>> page([], {})
    {'total': 0, 'objectIDs': None}
    """
    limit = _int(params, "limit")
    limit = DEFAULT_LIMIT if limit is None or limit < 1 else min(limit, MAX_LIMIT)
    offset = max(_int(params, "offset") or 0, 0)
    chosen = ids[offset : min(offset + limit, MAX_RESULTS)]
    return {"total": len(ids), "objectIDs": chosen or None}
