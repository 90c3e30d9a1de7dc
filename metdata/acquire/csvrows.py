"""MetObjects.csv rows as object records: the Open Access CSV's columns mapped onto the API's
fields (``records.SCHEMA``), with status ``csv``. The CSV has no image URLs and no measurements:
those stay null.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from metdata.core.schema import BOOL_FIELDS, FIELDS, INT_FIELDS
from metdata.core.statuses import Status

#: CSV column -> API field, for the columns that map one to one.
CSV_COLUMNS = {
    "Object ID": "objectID",
    "Is Highlight": "isHighlight",
    "Object Number": "accessionNumber",
    "AccessionYear": "accessionYear",
    "Is Public Domain": "isPublicDomain",
    "Department": "department",
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
    "Is Timeline Work": "isTimelineWork",
    "Gallery Number": "GalleryNumber",
}
#: Artist columns: ``|``-joined, one value per constituent; the API's artist* fields hold the first.
CSV_ARTIST = {
    "Artist Role": "artistRole",
    "Artist Prefix": "artistPrefix",
    "Artist Display Name": "artistDisplayName",
    "Artist Display Bio": "artistDisplayBio",
    "Artist Suffix": "artistSuffix",
    "Artist Alpha Sort": "artistAlphaSort",
    "Artist Nationality": "artistNationality",
    "Artist Begin Date": "artistBeginDate",
    "Artist End Date": "artistEndDate",
    "Artist Gender": "artistGender",
    "Artist ULAN URL": "artistULAN_URL",
    "Artist Wikidata URL": "artistWikidata_URL",
}
CSV_REQUIRED = ("Object ID", "Object Name", "Culture", "Classification", "Is Public Domain")


def _split(value: str | None) -> list[str]:
    return value.split("|") if value else []


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def csv_row(values: Mapping[str, str | None]) -> dict:
    """Map one MetObjects.csv row onto the schema, with status ``csv``.

    The CSV has no image URLs and no measurements: those stay null. Multi-valued columns are
    ``|``-joined; constituents are rebuilt from the artist columns.

    >>> row = csv_row({"Object ID": "45734", "Is Public Domain": "True", "Culture": "Japan",
    ...     "Artist Display Name": "Kiyohara Yukinobu|Other", "Constituent ID": "11986|2",
    ...     "Artist Role": "Artist|Artist", "Tags": "Birds", "Tags AAT URL": "u",
    ...     "Tags Wikidata URL": "w"})
    >>> row["isPublicDomain"], row["artistDisplayName"], row["constituents"][0]["constituentID"]
    (True, 'Kiyohara Yukinobu', 11986)
    >>> row["tags"], row["primaryImage"], row["status"]
    ([{'term': 'Birds', 'AAT_URL': 'u', 'Wikidata_URL': 'w'}], None, 'csv')
    """
    row = dict.fromkeys(FIELDS)
    for column, name in CSV_COLUMNS.items():
        value = values.get(column)
        if name in BOOL_FIELDS:
            row[name] = {"True": True, "False": False}.get(value or "")
        elif name in INT_FIELDS:
            row[name] = _int_or_none(value)
        else:
            row[name] = value if value is not None else ""
    artists = {name: _split(values.get(column)) for column, name in CSV_ARTIST.items()}
    for name, parts in artists.items():
        # like the API: artist* fields decoded, constituents' names as written (entities kept)
        row[name] = html.unescape(parts[0]) if parts else ""
    ids = _split(values.get("Constituent ID"))
    if ids:

        def part(name: str, i: int) -> str:
            return artists[name][i] if i < len(artists[name]) else ""

        row["constituents"] = [
            {
                "constituentID": _int_or_none(cid),
                "role": part("artistRole", i),
                "name": part("artistDisplayName", i),
                "constituentULAN_URL": part("artistULAN_URL", i),
                "constituentWikidata_URL": part("artistWikidata_URL", i),
                "gender": part("artistGender", i),
            }
            for i, cid in enumerate(ids)
        ]
    terms = _split(values.get("Tags"))
    if terms:
        aat, wiki = _split(values.get("Tags AAT URL")), _split(values.get("Tags Wikidata URL"))
        row["tags"] = [
            {
                "term": t,
                "AAT_URL": aat[i] if i < len(aat) else "",
                "Wikidata_URL": wiki[i] if i < len(wiki) else "",
            }
            for i, t in enumerate(terms)
        ]
    row["objectURL"] = f"https://www.metmuseum.org/art/collection/search/{row['objectID']}"
    row.update(status=Status.CSV.value, error=None, attempts=0, fetched_at=None)
    return row
