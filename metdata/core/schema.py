"""The Met object record: its 57 fields, in the order the API writes them, and their kinds.

This is the single definition of the record schema. The emulator generates records in this
order and the ingestion stage stores these columns, so both agree by construction.
"""

from __future__ import annotations

#: Every field of ``GET /v1/objects/{id}``, in the API's key order.
FIELDS: tuple[str, ...] = (
    "objectID",
    "isHighlight",
    "accessionNumber",
    "accessionYear",
    "isPublicDomain",
    "primaryImage",
    "primaryImageSmall",
    "additionalImages",
    "constituents",
    "department",
    "objectName",
    "title",
    "culture",
    "period",
    "dynasty",
    "reign",
    "portfolio",
    "artistRole",
    "artistPrefix",
    "artistDisplayName",
    "artistDisplayBio",
    "artistSuffix",
    "artistAlphaSort",
    "artistNationality",
    "artistBeginDate",
    "artistEndDate",
    "artistGender",
    "artistWikidata_URL",
    "artistULAN_URL",
    "objectDate",
    "objectBeginDate",
    "objectEndDate",
    "medium",
    "dimensions",
    "measurements",
    "creditLine",
    "geographyType",
    "city",
    "state",
    "county",
    "country",
    "region",
    "subregion",
    "locale",
    "locus",
    "excavation",
    "river",
    "classification",
    "rightsAndReproduction",
    "linkResource",
    "metadataDate",
    "repository",
    "objectURL",
    "tags",
    "objectWikidata_URL",
    "isTimelineWork",
    "GalleryNumber",
)

INT_FIELDS = frozenset({"objectID", "objectBeginDate", "objectEndDate"})
BOOL_FIELDS = frozenset({"isHighlight", "isPublicDomain", "isTimelineWork"})
#: The list fields (or null) are additionalImages, constituents, measurements and tags (see
#: ``records``); everything else is a string, ``""`` when unknown (never null).

#: The real departments (``GET /v1/departments``): ids 1, 3..19, 21. No 2, no 20.
DEPARTMENTS: tuple[tuple[int, str], ...] = (
    (1, "American Decorative Arts"),
    (3, "Ancient Near Eastern Art"),
    (4, "Arms and Armor"),
    (5, "Arts of Africa, Oceania, and the Americas"),
    (6, "Asian Art"),
    (7, "The Cloisters"),
    (8, "The Costume Institute"),
    (9, "Drawings and Prints"),
    (10, "Egyptian Art"),
    (11, "European Paintings"),
    (12, "European Sculpture and Decorative Arts"),
    (13, "Greek and Roman Art"),
    (14, "Islamic Art"),
    (15, "The Robert Lehman Collection"),
    (16, "The Libraries"),
    (17, "Medieval Art"),
    (18, "Musical Instruments"),
    (19, "Photographs"),
    (21, "Modern Art"),
)

#: Records name some departments differently from the departments listing.
RECORD_DEPARTMENT_NAMES: dict[int, str] = {
    1: "The American Wing",
    15: "Robert Lehman Collection",
    21: "Modern and Contemporary Art",
}


def department_of_record(name: str) -> int | None:
    """Return the department id for a record's ``department`` text, or None if unknown.

    >>> department_of_record("The American Wing")
    1
    """
    for dept_id, display in DEPARTMENTS:
        if name in (display, RECORD_DEPARTMENT_NAMES.get(dept_id)):
            return dept_id
    return None


#: The largest id a listing may hold: every integer up to 2**53 is exact in JSON.
MAX_OBJECT_ID = 2**53
