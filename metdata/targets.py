"""Training targets: which objects belong and which class each one is. Pure functions.

Built in: ``painting-culture``, the blog's four classes, with rules that fit the real data:
paintings are objects classified "Paintings" or whose objectName is of the painting kind
(the American Wing leaves classification empty; Islamic Art files Indian album paintings
under "Codices"); the culture comes from ``culture``, then ``country``, then
``artistNationality``; India is any culture containing "India"/"Indian".
"""

from __future__ import annotations

from collections.abc import Mapping

PAINTING_NAMES = frozenset(
    {
        "painting",
        "hanging scroll",
        "handscroll",
        "album leaf",
        "illustrated album leaf",
        "folio from an illustrated manuscript",
        "folio from a ragamala series",
        "folding fan mounted as an album leaf",
        "pair of six-panel folding screens",
        "fan",
    }
)
CLASSES = ("America", "China", "India", "Japan")
_CULTURE_WORDS = (
    ("India", ("india",)),
    ("China", ("china", "chinese")),
    ("Japan", ("japan", "japanese")),
    ("America", ("american", "united states")),
)


def is_painting(record: Mapping) -> bool:
    """Whether a record is a painting, whatever its department calls it.

    >>> is_painting({"classification": "", "objectName": "Painting"})
    True
    >>> is_painting({"classification": "Codices", "objectName": "Illustrated album leaf"})
    True
    >>> is_painting({"classification": "Ceramics", "objectName": "Jar"})
    False
    """
    return (record.get("classification") or "") == "Paintings" or (
        (record.get("objectName") or "").strip().lower() in PAINTING_NAMES
    )


def culture_class(record: Mapping) -> str | None:
    """The class of a record's culture (culture, then country, then artist nationality).

    >>> culture_class({"culture": "India (Rajasthan, Mewar)"})
    'India'
    >>> culture_class({"culture": "", "country": "India"})
    'India'
    >>> culture_class({"culture": "", "country": "", "artistNationality": "German"}) is None
    True
    """
    for field in ("culture", "country", "artistNationality"):
        value = (record.get(field) or "").strip().lower()
        if value:
            return next((cls for cls, words in _CULTURE_WORDS if any(w in value for w in words)), None)
    return None


def painting_culture(record: Mapping) -> str | None:
    """The ``painting-culture`` class of a record, or None if it is outside the target."""
    return culture_class(record) if is_painting(record) else None


TARGETS = {"painting-culture": painting_culture}
