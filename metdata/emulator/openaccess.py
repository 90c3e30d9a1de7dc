"""The emulator's catalog written as the Open Access ``MetObjects.csv``, generated as a stream.

The real file's format: a UTF-8 byte order mark, then 54 named columns, comma-separated, quoted
where needed (``Dimensions`` holds ``\\r\\n``), booleans ``True``/``False``, multi-valued fields
(one value per constituent, per tag) joined with ``|``, no image URLs and no measurements. Rows
are the listed objects last updated before the file's date, in id order, as in the real file,
which misses every object added or changed since it was made.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Iterator, Mapping

#: The real MetObjects.csv's header, in its order.
COLUMNS = (
    "Object Number",
    "Is Highlight",
    "Is Timeline Work",
    "Is Public Domain",
    "Object ID",
    "Gallery Number",
    "Department",
    "AccessionYear",
    "Object Name",
    "Title",
    "Culture",
    "Period",
    "Dynasty",
    "Reign",
    "Portfolio",
    "Constituent ID",
    "Artist Role",
    "Artist Prefix",
    "Artist Display Name",
    "Artist Display Bio",
    "Artist Suffix",
    "Artist Alpha Sort",
    "Artist Nationality",
    "Artist Begin Date",
    "Artist End Date",
    "Artist Gender",
    "Artist ULAN URL",
    "Artist Wikidata URL",
    "Object Date",
    "Object Begin Date",
    "Object End Date",
    "Medium",
    "Dimensions",
    "Credit Line",
    "Geography Type",
    "City",
    "State",
    "County",
    "Country",
    "Region",
    "Subregion",
    "Locale",
    "Locus",
    "Excavation",
    "River",
    "Classification",
    "Rights and Reproduction",
    "Link Resource",
    "Object Wikidata URL",
    "Metadata Date",
    "Repository",
    "Tags",
    "Tags AAT URL",
    "Tags Wikidata URL",
)
BOM = "\ufeff"
#: The default date of the emulator's CSV: it leaves out the synthetic catalog's newest ~4 % of
#: objects by metadata date (the real 2023 file misses ~19k of the ~503k objects listed in 2026).
CSV_DATE = dt.date(2026, 8, 26)
#: Where the emulator serves it.
CSV_PATH = "/openaccess/MetObjects.csv"
#: CSV column -> API field, for the columns with one value per object. Written here on purpose, not
#: taken from ``metdata.acquire.csvrows.CSV_COLUMNS``: the emulator stands for the real file, so a wrong
#: mapping in the reader shows as a failing test instead of agreeing with itself.
_FIELDS = {
    "Object Number": "accessionNumber",
    "Is Highlight": "isHighlight",
    "Is Timeline Work": "isTimelineWork",
    "Is Public Domain": "isPublicDomain",
    "Object ID": "objectID",
    "Gallery Number": "GalleryNumber",
    "Department": "department",
    "AccessionYear": "accessionYear",
    "Object Name": "objectName",
    "Title": "title",
    "Culture": "culture",
    "Period": "period",
    "Dynasty": "dynasty",
    "Reign": "reign",
    "Portfolio": "portfolio",
    "Object Date": "objectDate",
    "Object Begin Date": "objectBeginDate",
    "Object End Date": "objectEndDate",
    "Medium": "medium",
    "Dimensions": "dimensions",
    "Credit Line": "creditLine",
    "Geography Type": "geographyType",
    "City": "city",
    "State": "state",
    "County": "county",
    "Country": "country",
    "Region": "region",
    "Subregion": "subregion",
    "Locale": "locale",
    "Locus": "locus",
    "Excavation": "excavation",
    "River": "river",
    "Classification": "classification",
    "Rights and Reproduction": "rightsAndReproduction",
    "Link Resource": "linkResource",
    "Object Wikidata URL": "objectWikidata_URL",
    "Metadata Date": "metadataDate",
    "Repository": "repository",
}
#: Artist columns: the API's artist* field for a maker, the constituents' own values when listed.
_ARTIST = {
    "Artist Role": ("artistRole", "role"),
    "Artist Prefix": ("artistPrefix", None),
    "Artist Display Name": ("artistDisplayName", "name"),
    "Artist Display Bio": ("artistDisplayBio", None),
    "Artist Suffix": ("artistSuffix", None),
    "Artist Alpha Sort": ("artistAlphaSort", None),
    "Artist Nationality": ("artistNationality", None),
    "Artist Begin Date": ("artistBeginDate", None),
    "Artist End Date": ("artistEndDate", None),
    "Artist Gender": ("artistGender", "gender"),
    "Artist ULAN URL": ("artistULAN_URL", "constituentULAN_URL"),
    "Artist Wikidata URL": ("artistWikidata_URL", "constituentWikidata_URL"),
}
_TAGS = {"Tags": "term", "Tags AAT URL": "AAT_URL", "Tags Wikidata URL": "Wikidata_URL"}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "" if value is None else str(value)


def row(record: Mapping) -> list[str]:
    """One record as a MetObjects.csv row, in ``COLUMNS`` order.

    Constituents' names keep their HTML entities, as the API's ``constituents`` do (metdata's
    reader decodes them for ``artistDisplayName``).

    >>> tags = [{"term": "Birds", "AAT_URL": "a", "Wikidata_URL": "w"}, {"term": "Men", "AAT_URL": "b"}]
    >>> r = dict(zip(COLUMNS, row({"objectID": 5, "isPublicDomain": True, "tags": tags})))
    >>> r["Object ID"], r["Is Public Domain"], r["Tags"], r["Tags AAT URL"], r["Is Highlight"]
    ('5', 'True', 'Birds|Men', 'a|b', '')
    """
    values = {column: _text(record.get(field)) for column, field in _FIELDS.items()}
    makers = record.get("constituents") or []
    values["Constituent ID"] = "|".join(_text(m.get("constituentID")) for m in makers)
    for column, (field, own) in _ARTIST.items():
        if makers and own is not None:
            values[column] = "|".join(_text(m.get(own)) for m in makers)
        else:
            values[column] = _text(record.get(field))
    tags = record.get("tags") or []
    for column, key in _TAGS.items():
        values[column] = "|".join(_text(t.get(key)) for t in tags)
    return [values[c] for c in COLUMNS]


def stream(ids: Iterable[int], record: Callable[[int], Mapping | None], rows_per_chunk: int = 500) -> Iterator[bytes]:
    """The whole CSV as UTF-8 chunks of ``rows_per_chunk`` rows: the BOM and header first.

    Memory stays at one chunk whatever the number of rows.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow(COLUMNS)
    n = 0
    for object_id in ids:
        found = record(int(object_id))
        if found is None:
            continue
        writer.writerow(row(found))
        n += 1
        if n % rows_per_chunk == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()
