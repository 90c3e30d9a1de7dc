"""Synthetic catalog: deterministic Met-like records, generated lazily from (seed, objectID).

Only three things are computed for the whole catalog up front, as NumPy arrays: the sparse id
set, each object's department and its metadata date (the listing filters need them). Everything
else in a record is drawn from a ``random.Random`` seeded by (seed, objectID) when it is asked
for, so a 500,000-object catalog starts in well under a second.

The mix follows what the real collection looks like (see ``shared/met-api-facts.md``): country
names with places in Asian Art, Indian album paintings filed under Islamic Art with culture ""
and country "India", American Wing paintings with classification "" and objectName "Painting",
European paintings with culture "" and the origin in artistNationality, hundreds of
classifications including aliases, nulls where the API has them, older 56- and 55-key records.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from metdata.core.schema import DEPARTMENTS, FIELDS, RECORD_DEPARTMENT_NAMES

#: Where the real image host lives; the server rewrites it to its own address.
IMAGE_HOST = "https://images.metmuseum.org"
MAX_ID = 900_000
_EPOCH = dt.datetime(2018, 1, 1, tzinfo=dt.UTC)
_SPAN_DAYS = (dt.date(2026, 10, 31) - dt.date(2018, 1, 1)).days
#: Records last updated before these dates lack the keys the API added later.
_MEASUREMENTS_SINCE = dt.datetime(2020, 11, 1, tzinfo=dt.UTC)
_GALLERY_SINCE = dt.datetime(2019, 6, 1, tzinfo=dt.UTC)

#: Department shares of the ``dense`` mix (the catalog as it was first built: ~17 % paintings).
_DEPT_WEIGHTS = {
    1: 0.10,
    3: 0.03,
    4: 0.03,
    5: 0.03,
    6: 0.16,
    7: 0.02,
    8: 0.05,
    9: 0.16,
    10: 0.04,
    11: 0.04,
    12: 0.07,
    13: 0.04,
    14: 0.05,
    15: 0.02,
    16: 0.01,
    17: 0.02,
    18: 0.01,
    19: 0.06,
    21: 0.06,
}
#: Department shares of the ``real`` mix: the real listing's (Drawings and Prints 185,098 of 502,886,
#: the others from the 2023 CSV's department counts, rounded).
_REAL_DEPT_WEIGHTS = {
    1: 0.037,
    3: 0.013,
    4: 0.029,
    5: 0.024,
    6: 0.076,
    7: 0.005,
    8: 0.064,
    9: 0.368,
    10: 0.056,
    11: 0.005,
    12: 0.086,
    13: 0.067,
    14: 0.030,
    15: 0.005,
    16: 0.002,
    17: 0.014,
    18: 0.010,
    19: 0.076,
    21: 0.028,
}
_DEPT_CODES = {
    1: "ad",
    3: "an",
    4: "aa",
    5: "ao",
    6: "as",
    7: "cl",
    8: "ci",
    9: "dp",
    10: "eg",
    11: "ep",
    12: "es",
    13: "gr",
    14: "is",
    15: "rl",
    16: "li",
    17: "md",
    18: "mi",
    19: "ph",
    21: "ma",
}

# The long tail of classifications: the real collection has 450+ of them, many of the
# "Material-Kind" form and aliases of one another ("Metalwork", "Metal", "Metal-Ornaments").
_MATERIALS = (
    "Ceramics",
    "Metal",
    "Metalwork",
    "Wood",
    "Stone",
    "Textiles",
    "Glass",
    "Ivory",
    "Bone",
    "Shell",
    "Leather",
    "Paper",
    "Gold",
    "Silver",
    "Bronze",
    "Iron",
    "Jade",
    "Lacquer",
    "Feathers",
    "Basketry",
    "Beadwork",
    "Enamels",
    "Horn",
    "Terracotta",
)
_KINDS = (
    "Sculpture",
    "Containers",
    "Ornaments",
    "Implements",
    "Tools",
    "Vessels",
    "Ritual",
    "Furniture",
    "Costumes",
    "Weapons",
    "Jewelry",
    "Figures",
    "Fragments",
    "Reliefs",
    "Masks",
    "Lamps",
    "Seals",
    "Amulets",
    "Inlays",
)
LONG_TAIL_CLASSIFICATIONS = tuple(f"{m}-{k}" for m in _MATERIALS for k in _KINDS)

_NATIONALITIES = ("French", "Dutch", "Italian", "Spanish", "German", "Flemish", "British")
_INDIA_CULTURES = (
    "India (Basohli, Jammu)",
    "India (Rajasthan, Mewar)",
    "India (Punjab Hills, Kangra)",
    "India (Rajasthan, Bikaner)",
    "India",
    "India (Deccan, Bijapur)",
)
_CHINA_FORMATS = (
    "Hanging scroll",
    "Handscroll",
    "Album leaf",
    "Folding fan mounted as an album leaf",
)
_JAPAN_FORMATS = ("Hanging scroll", "Album leaf", "Pair of six-panel folding screens", "Painting")
_INDIA_FORMATS = ("Folio from a ragamala series", "Painting", "Illustrated album leaf")
_NATURE = (
    "Quail and Millet",
    "Plum Blossoms",
    "Bamboo in Wind",
    "Egret and Lotus",
    "Pine and Crane",
    "Orchids",
    "Sparrows on a Branch",
    "Autumn Grasses",
)
_SCENES = (
    "Portrait of a Man",
    "Portrait of a Woman",
    "Landscape with River",
    "The Harbor",
    "Still Life with Fruit",
    "Madonna and Child",
    "View of the Valley",
    "Self-Portrait",
)
_INDIAN_TITLES = (
    "Krishna and Radha",
    "Raga Megha",
    "A Prince Hawking",
    "Sultan Slays a Tiger",
    "Lovers on a Terrace",
    "Ragini Todi",
)
_TAGS = (
    ("Birds", "300266506", "Q5113"),
    ("Flowers", "300132399", "Q506"),
    ("Portraits", "300015637", "Q134307"),
    ("Landscapes", "300015636", "Q191163"),
    ("Men", "300025928", "Q8441"),
    ("Women", "300025943", "Q467"),
    ("Horses", "300250148", "Q726"),
    ("Boats", "300178749", "Q35872"),
)
_GIVEN = ("Kiyohara", "Wang", "John", "Mary", "Abu&#39;l", "Mir Sayyid &#39;Ali", "Pierre", "Anna")
_FAMILY = ("Yukinobu", "Hui", "Singleton Copley", "Cassatt", "Hasan", "Sargent", "Faber", "Li")


@dataclass(frozen=True)
class ImageSpec:
    """How to draw one image file of a synthetic object.

    Attributes:
        style: an ``artwork.STYLES`` name.
        seed: the drawing seed; the same for every rendition of the same picture.
        width, height: the web-large size; originals are ``scale`` times larger.
        scale: how much larger the original is than web-large.
        fmt: ``"jpeg"`` or ``"png"``.
        gray: encode as a single-channel image.
    """

    style: str
    seed: int
    width: int
    height: int
    scale: float
    fmt: str
    gray: bool


@dataclass(frozen=True)
class Mix:
    """The proportions of a synthetic catalog; the structure of each department's records does not change.

    Attributes:
        departments: each department's share of the objects.
        asian_painting, american_painting, islamic_painting: the share of paintings (Indian folios in
            Islamic Art) among the objects of those departments.
        painting_public: the share of paintings (Asian, American Wing, European) in the public domain.
        modern_classes: Modern Art's (classification, objectName, style) choices, drawn evenly.
        closed_images: the share of objects not in the public domain of which the museum still
            holds an image: search's ``hasImages=true`` finds them, their records link none.
    """

    departments: dict[int, float]
    asian_painting: float
    american_painting: float
    islamic_painting: float
    painting_public: float
    modern_classes: tuple[tuple[str, str, str], ...]
    closed_images: float


_MODERN_PAINTING = ("Paintings", "Painting", "european")
_MODERN_SCULPTURE = ("Sculpture", "Sculpture", "sculpture")
#: ``dense``: the catalog as first built, many paintings (17 % of objects, 71 % of them public):
#: what small tests and the demo need. ``real``: the real collection's proportions (paintings
#: about 2 % of objects, about 60 % of them public domain).
MIXES = {
    "dense": Mix(_DEPT_WEIGHTS, 0.45, 0.35, 0.3, 0.85, (_MODERN_PAINTING, _MODERN_SCULPTURE), 0.4),
    # closed_images 0.15: about 10 % of the paintings that hasImages=true finds have no open image
    # (33 of 315 sampled hits in the facts file)
    "real": Mix(_REAL_DEPT_WEIGHTS, 0.12, 0.07, 0.06, 0.78, (_MODERN_PAINTING,) + (_MODERN_SCULPTURE,) * 4, 0.15),
}


#: How many more records the search index holds than the listing (536,265 vs 502,886).
WITHDRAWN_SHARE = 536_265 / 502_886 - 1
#: Withdrawn records by department: mostly prints and drawings (213,769 indexed vs 185,098 listed),
#: almost no paintings (about 0.4 % of painting hits are withdrawn).
_WITHDRAWN_WEIGHTS = {
    1: 0.004,
    3: 0.005,
    4: 0.01,
    5: 0.01,
    6: 0.004,
    7: 0.002,
    8: 0.04,
    9: 0.80,
    10: 0.02,
    11: 0.0003,
    12: 0.03,
    13: 0.02,
    14: 0.002,
    15: 0.002,
    16: 0.002,
    17: 0.005,
    18: 0.005,
    19: 0.04,
    21: 0.002,
}
#: The share of withdrawn records whose department is none of the 19 (at least one), and their names.
ORPHAN_SHARE = 0.005
ORPHAN_DEPARTMENTS = ("American Paintings and Sculpture", "Twentieth Century Art")


class SyntheticCatalog:
    """A deterministic catalog of ``n`` objects drawn from ``seed``.

    Args:
        n: how many objects the listing holds (sparse ids below 900,000).
        seed: every record and image is a pure function of (seed, mix, objectID).
        mix: ``"real"`` (the real collection's proportions) or ``"dense"`` (many paintings; the
            records and images of the catalog before the mixes existed, bit for bit).

    Raises:
        ValueError: if ``n`` is not between 1 and 899,999, or the mix is unknown.
    """

    def __init__(self, n: int, seed: int = 0, mix: str = "real") -> None:
        if not 1 <= n < MAX_ID:
            raise ValueError(f"--objects must be between 1 and {MAX_ID - 1}, got {n}")
        if mix not in MIXES:
            raise ValueError(f"unknown mix {mix!r}; use one of {', '.join(MIXES)}")
        self.n = n
        self.seed = seed
        self.mix = mix
        rng = np.random.default_rng(seed)
        self.ids = np.sort(rng.choice(np.arange(1, MAX_ID, dtype=np.int64), n, replace=False))
        shares = MIXES[mix].departments
        dept_ids = np.array(list(shares), dtype=np.int64)
        weights = np.array(list(shares.values()))
        self.departments = rng.choice(dept_ids, n, p=weights / weights.sum())
        # Recent updates are more common than old ones, as in the real listing.
        days = (rng.beta(2.0, 1.0, n) * _SPAN_DAYS).astype(np.int64)
        self.updated = days * 86_400 + rng.integers(0, 86_400, n)

    def __len__(self) -> int:
        return self.n

    def _index(self, object_id: int) -> int | None:
        i = int(np.searchsorted(self.ids, object_id))
        return i if i < self.n and self.ids[i] == object_id else None

    def __contains__(self, object_id: int) -> bool:
        return self._index(object_id) is not None

    def listing(self, department_ids: set[int] | None, since: dt.date | None) -> list[int]:
        """Return the ids kept by the listing filters, in listing order."""
        keep = np.ones(self.n, dtype=bool)
        if department_ids is not None:
            keep &= np.isin(self.departments, list(department_ids))
        if since is not None:
            keep &= self.updated >= (since - _EPOCH.date()).days * 86_400
        return self.ids[keep].tolist()

    def csv_ids(self, until: dt.date) -> np.ndarray:
        """The listed ids last updated before ``until``, in id order (the rows of the Open Access CSV)."""
        return self.ids[self.updated < (until - _EPOCH.date()).days * 86_400]

    def record_bytes(self, object_id: int) -> bytes | None:
        """Return the API's JSON body for an id, or None if the id is not in the catalog."""
        record = self.record(object_id)
        if record is None:
            return None
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()

    def record(self, object_id: int) -> dict | None:
        """Return the record of an id as a dict in API key order, or None if unknown."""
        i = self._index(object_id)
        if i is None:
            return None
        record, _ = _generate(self.seed, self.mix, object_id, int(self.departments[i]), int(self.updated[i]))
        return record

    def image(self, path: str) -> ImageSpec | None:
        """Return how to draw the image at an image-host path, or None if there is none.

        Paths are case-sensitive, as on the real host: ``DP123.jpg`` is not ``DP123.JPG``.
        """
        digits = "".join(c if c.isdigit() else " " for c in path.rsplit("/", 1)[-1]).split()
        if not digits:
            return None
        object_id = int(digits[0])
        i = self._index(object_id)
        if i is None:
            return None
        _, images = _generate(self.seed, self.mix, object_id, int(self.departments[i]), int(self.updated[i]))
        return images.get(path)

    @cached_property
    def withdrawn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The search index's records that the listing does not hold: (ids sorted, departments
        (0: none of the 19), update times). About 6.6 % more records than the listing, as the
        real index (536,265 vs 502,886), most of them prints and drawings; drawn from their own
        seed, so the listed objects do not change."""
        rng = np.random.default_rng([self.seed, 21])
        unlisted = np.setdiff1d(np.arange(1, MAX_ID, dtype=np.int64), self.ids, assume_unique=True)
        n = min(len(unlisted), round(self.n * WITHDRAWN_SHARE))
        ids = np.sort(rng.choice(unlisted, n, replace=False))
        dept_ids = np.array(list(_WITHDRAWN_WEIGHTS), dtype=np.int64)
        weights = np.array(list(_WITHDRAWN_WEIGHTS.values()))
        departments = rng.choice(dept_ids, n, p=weights / weights.sum())
        # a few records of departments that are none of the 19 (a split by department misses them)
        orphans = rng.choice(n, min(n, max(1, round(n * ORPHAN_SHARE))), replace=False) if n else []
        departments[orphans] = 0
        updated = (rng.beta(2.0, 1.0, n) * _SPAN_DAYS).astype(np.int64) * 86_400 + rng.integers(0, 86_400, n)
        return ids, departments, updated

    def is_withdrawn(self, object_id: int) -> bool:
        """Whether an id is a withdrawn record of the search index (its lookup: ``Not a valid object``)."""
        ids = self.withdrawn[0]
        i = int(np.searchsorted(ids, object_id))
        return i < len(ids) and ids[i] == object_id

    def search_records(self) -> Iterator[dict]:
        """Every record of the search index, one at a time: the listed ones, then the withdrawn."""
        for i in self.ids:
            yield self.record(int(i))
        for object_id, dept, updated in zip(*self.withdrawn, strict=True):
            profile = int(dept) or 9
            record, _ = _generate(self.seed, self.mix, int(object_id), profile, int(updated))
            if not dept:
                record = dict(record, department=ORPHAN_DEPARTMENTS[int(object_id) % len(ORPHAN_DEPARTMENTS)])
            yield record

    def has_museum_image(self, record: dict) -> bool:
        """Whether the museum holds an image, public or not (what search's ``hasImages`` sees)."""
        closed = MIXES[self.mix].closed_images
        return record["isPublicDomain"] or random.Random(record["objectID"] ^ self.seed).random() < closed


@lru_cache(maxsize=8192)
def _generate(seed: int, mix: str, object_id: int, dept: int, updated: int) -> tuple[dict, dict]:
    """Draw one record and its image specs, keyed by image-host path."""
    rnd = random.Random(seed * 1_000_003 + object_id)
    proportions = MIXES[mix]
    profile = _PROFILES[dept](rnd, proportions)
    when = _EPOCH + dt.timedelta(seconds=updated)
    painting = profile.pop("painting", False)
    public = rnd.random() < (proportions.painting_public if painting else 0.2) * (0.1 if dept == 21 else 1.0)
    style = profile.pop("style")

    record: dict = dict.fromkeys(FIELDS, "")
    record.update(
        objectID=object_id,
        isHighlight=rnd.random() < 0.02,
        accessionYear=str(rnd.randint(1870, 2024)),
        isPublicDomain=public,
        additionalImages=[],
        constituents=None,
        department=RECORD_DEPARTMENT_NAMES.get(dept, dict(DEPARTMENTS)[dept]),
        measurements=None,
        metadataDate=_iso(when, rnd),
        repository="Metropolitan Museum of Art, New York, NY",
        objectURL=f"https://www.metmuseum.org/art/collection/search/{object_id}",
        tags=None,
        isTimelineWork=rnd.random() < 0.03,
    )
    record["accessionNumber"] = f"{record['accessionYear'][2:]}.{rnd.randint(1, 300)}.{rnd.randint(1, 99)}"
    record.update(profile)
    _fill_dates(record, rnd, dept)
    _fill_maker(record, rnd)
    _fill_physical(record, rnd)
    if rnd.random() < 0.6:
        record["tags"] = [
            {
                "term": t,
                "AAT_URL": f"http://vocab.getty.edu/page/aat/{a}",
                "Wikidata_URL": f"https://www.wikidata.org/wiki/{w}",
            }
            for t, a, w in rnd.sample(_TAGS, rnd.randint(1, 3))
        ]
    if rnd.random() < 0.2:
        record["GalleryNumber"] = str(rnd.randint(100, 999))
    credit = rnd.choice(("Gift of", "Bequest of", "Purchase,"))
    record["creditLine"] = f"{credit} {rnd.choice(_FAMILY)}, {record['accessionYear']}"

    images: dict[str, ImageSpec] = {}
    if public:
        images = _image_files(record, rnd, dept, style)
    # Older records were written before the API grew these keys.
    if when < _MEASUREMENTS_SINCE:
        del record["measurements"]
    if when < _GALLERY_SINCE:
        del record["GalleryNumber"]
    return record, images


def _image_files(record: dict, rnd: random.Random, dept: int, style: str) -> dict[str, ImageSpec]:
    code = _DEPT_CODES[dept]
    oid = record["objectID"]
    roll = rnd.random()
    fmt = "png" if roll < 0.015 else "jpeg"
    ext = ".png" if fmt == "png" else rnd.choice((".jpg",) * 9 + (".JPG",))
    name = rnd.choice((f"DP{oid}", f"DP{oid}", f"DT{oid}", f"{oid}.{rnd.randint(1, 99)}_a", f"LC-{oid}_001"))
    long_side = rnd.randint(500, 800)
    aspect = rnd.uniform(0.45, 1.0)  # short/long; hanging scrolls are tall and narrow
    tall = (style in ("china", "japan") and rnd.random() < 0.6) or rnd.random() < 0.5
    w, h = (int(long_side * aspect), long_side) if tall else (long_side, int(long_side * aspect))
    scale = 7.5 if rnd.random() < 0.01 else rnd.uniform(1.5, 3.0)  # a few originals are huge
    spec = ImageSpec(style, rnd.getrandbits(32), w, h, round(scale, 3), fmt, rnd.random() < 0.02)
    record["primaryImage"] = f"{IMAGE_HOST}/CRDImages/{code}/original/{name}{ext}"
    record["primaryImageSmall"] = f"{IMAGE_HOST}/CRDImages/{code}/web-large/{name}{ext}"
    files = {
        f"/CRDImages/{code}/original/{name}{ext}": spec,
        f"/CRDImages/{code}/web-large/{name}{ext}": spec,
    }
    for k in range(rnd.choice((0, 0, 0, 1, 2, 3))):
        extra = f"/CRDImages/{code}/original/DP{oid}_{k + 1}.jpg"
        record["additionalImages"].append(IMAGE_HOST + extra)
        files[extra] = ImageSpec(style, rnd.getrandbits(32), w, h, spec.scale, "jpeg", False)
    return files


def _iso(when: dt.datetime, rnd: random.Random) -> str:
    """ISO-8601 UTC with 0-3 fractional digits, as the API writes metadataDate."""
    digits = rnd.choice((0, 2, 3, 3, 3))
    frac = f".{rnd.randint(1, 10**digits - 1):0{digits}d}".rstrip("0") if digits else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (frac if frac != "." else "") + "Z"


def _fill_dates(record: dict, rnd: random.Random, dept: int) -> None:
    # antiquities have BC dates, written as negative ints
    begin = rnd.randint(-3000, 300) if dept in (3, 10, 13) else rnd.randint(1400, 1950)
    end = begin + rnd.choice((0, 10, 25, 50, 100))
    record["objectBeginDate"], record["objectEndDate"] = begin, end
    if begin < 0:
        record["objectDate"] = f"ca. {-begin} B.C."
    else:
        record["objectDate"] = rnd.choice(
            (str(begin), f"ca. {begin}", f"{begin}–{end}", f"{begin // 100 + 1}th century")
        )


def _fill_maker(record: dict, rnd: random.Random) -> None:
    if rnd.random() < 0.4:
        return
    name = f"{rnd.choice(_GIVEN)} {rnd.choice(_FAMILY)}"
    ulan = f"http://vocab.getty.edu/page/ulan/{rnd.randint(500000000, 500099999)}"
    wiki = f"https://www.wikidata.org/wiki/Q{rnd.randint(1000, 9999999)}"
    gender = rnd.choice(("", "", "", "Female"))
    record["constituents"] = [
        {
            "constituentID": rnd.randint(1, 250000),
            "role": "Artist",
            "name": name,
            "constituentULAN_URL": ulan,
            "constituentWikidata_URL": wiki,
            "gender": gender,
        }
    ]
    begin = rnd.randint(1400, 1900)
    # artistDisplayName carries the decoded name; constituents keep the HTML entities.
    record.update(
        artistRole="Artist",
        artistDisplayName=name.replace("&#39;", "'"),
        artistDisplayBio=f"{record['artistNationality'] or 'active'}, {begin}–{begin + 60}",
        artistAlphaSort=", ".join(reversed(name.replace("&#39;", "'").split(" ", 1))),
        artistBeginDate=f"{begin:04d}",
        artistEndDate=f"{begin + 60:04d}",
        artistGender=gender,
        artistWikidata_URL=wiki,
        artistULAN_URL=ulan,
    )


def _fill_physical(record: dict, rnd: random.Random) -> None:
    h, w = round(rnd.uniform(5, 200), 1), round(rnd.uniform(5, 150), 1)
    dims = f"{h / 2.54:.0f} x {w / 2.54:.0f} in. ({h} x {w} cm)"
    if rnd.random() < 0.3:
        frame = f"{h / 2.54 + 4:.0f} x {w / 2.54 + 4:.0f} in. ({h + 10} x {w + 10} cm)"
        dims = f"Image: {dims}\r\nFrame: {frame}"
    record["dimensions"] = dims
    if rnd.random() < 0.8:
        record["measurements"] = [
            {
                "elementName": "Overall",
                "elementDescription": rnd.choice((None, "Image", "Frame")),
                "elementMeasurements": {"Height": h, "Width": w},
            }
        ]


# Department profiles: each returns the fields that make a record look like its department,
# plus the artwork style and whether it is a painting.


def _asian(rnd: random.Random, mix: Mix) -> dict:
    if rnd.random() < mix.asian_painting:
        roll = rnd.random()
        if roll < 0.4:
            culture, fmt, style = "China", rnd.choice(_CHINA_FORMATS), "china"
        elif roll < 0.8:
            culture, fmt, style = "Japan", rnd.choice(_JAPAN_FORMATS), "japan"
        elif roll < 0.88:
            culture, fmt, style = "Korea", "Hanging scroll", "china"
        else:
            culture, fmt, style = rnd.choice(_INDIA_CULTURES), rnd.choice(_INDIA_FORMATS), "india"
        titles = _INDIAN_TITLES if style == "india" else _NATURE
        medium = "Ink, opaque watercolor, and gold on paper" if style == "india" else f"{fmt}; ink and color on silk"
        return dict(
            painting=True,
            style=style,
            culture=culture,
            classification="Paintings",
            objectName=fmt,
            title=rnd.choice(titles),
            medium=medium,
            period=rnd.choice(("", "Edo period (1615–1868)", "Qing dynasty (1644–1911)")),
        )
    culture = rnd.choice(("China", "Japan", "Korea", "India", "Nepal", "Tibet", "Thailand"))
    cls, style = rnd.choice(
        (
            ("Ceramics", "ceramic"),
            ("Metalwork", "metalwork"),
            ("Textiles", "textile"),
            ("Sculpture", "sculpture"),
            ("Lacquer", "generic"),
            ("Jade", "generic"),
            ("Prints", "print"),
            ("Calligraphy", "print"),
        )
    )
    name = {"Prints": "Print", "Calligraphy": "Hanging scroll"}.get(cls, rnd.choice(("Jar", "Bowl", "Figure")))
    return dict(
        style=style,
        culture=culture,
        classification=cls,
        objectName=name,
        title=f"{name} with {rnd.choice(_NATURE)}",
        medium=rnd.choice(("Porcelain", "Bronze", "Silk")),
    )


def _american(rnd: random.Random, mix: Mix) -> dict:
    base = dict(culture="American", country=rnd.choice(("United States", "")), artistNationality="American")
    if rnd.random() < mix.american_painting:
        return dict(
            base,
            painting=True,
            style="america",
            classification="",
            objectName="Painting",
            title=rnd.choice(_SCENES),
            medium="Oil on canvas",
        )
    name, style = rnd.choice(
        (
            ("Armchair", "generic"),
            ("Work table", "generic"),
            ("Teapot", "metalwork"),
            ("Quilt", "textile"),
            ("Vase", "ceramic"),
            ("Centavos", "metalwork"),
        )
    )
    return dict(
        base,
        style=style,
        objectName=name,
        title=name,
        medium=rnd.choice(("Mahogany", "Silver", "Glass")),
        classification=rnd.choice(("", "", "", "Metal", "Furniture", "Glass")),
    )


def _european_paintings(rnd: random.Random, mix: Mix) -> dict:
    nationality = rnd.choice(_NATIONALITIES + ("American",) * (1 if rnd.random() < 0.15 else 0))
    return dict(
        painting=True,
        style="america" if nationality == "American" else "european",
        culture="",
        classification="Paintings",
        objectName="Painting",
        artistNationality=nationality,
        title=rnd.choice(_SCENES),
        medium=rnd.choice(("Oil on canvas", "Tempera and gold on wood", "Oil on wood")),
    )


def _islamic(rnd: random.Random, mix: Mix) -> dict:
    if rnd.random() < mix.islamic_painting:  # Indian court paintings: culture "", country "India", "Codices"
        return dict(
            painting=True,
            style="india",
            culture="",
            country="India",
            classification="Codices",
            objectName=rnd.choice(("Illustrated album leaf", "Folio from an illustrated manuscript")),
            title=rnd.choice(_INDIAN_TITLES),
            medium="Ink, opaque watercolor, and gold on paper",
        )
    country = rnd.choice(("Iran", "Egypt", "Turkey", "Syria"))
    cls, style = rnd.choice(
        (
            ("Codices", "india"),
            ("Ceramics", "ceramic"),
            ("Metal", "metalwork"),
            ("Textiles", "textile"),
            ("Glass", "generic"),
        )
    )
    return dict(
        style=style,
        culture="",
        country=country,
        classification=cls,
        objectName="Folio from an illustrated manuscript" if cls == "Codices" else "Bowl",
        title="Folio" if cls == "Codices" else "Bowl",
        artistNationality="Iranian" if country == "Iran" else "",
    )


def _generic(classes: tuple[tuple[str, str, str], ...] | None, cultures: tuple[str, ...], tail: float = 0.15):
    """A profile for departments of non-paintings: (classification, objectName, style) choices
    (None: the mix's ``modern_classes``)."""

    def profile(rnd: random.Random, mix: Mix) -> dict:
        cls, name, style = rnd.choice(classes or mix.modern_classes)
        if rnd.random() < tail:
            cls = LONG_TAIL_CLASSIFICATIONS[
                min(int(rnd.paretovariate(0.6)) - 1, len(LONG_TAIL_CLASSIFICATIONS) - 1)
                if rnd.random() < 0.5
                else rnd.randrange(len(LONG_TAIL_CLASSIFICATIONS))
            ]
        culture = rnd.choice(cultures)
        return dict(
            style=style,
            classification=cls,
            objectName=name,
            title=f"{name}, {culture or 'untitled'}".rstrip(", "),
            culture=culture,
            medium=rnd.choice(("Bronze", "Wood", "Terracotta", "Gelatin silver print", "Etching")),
            artistNationality=rnd.choice(_NATIONALITIES) if style in ("print", "photograph") else "",
        )

    return profile


_PROFILES = {
    1: _american,
    3: _generic(
        (
            ("Metalwork", "Bowl", "metalwork"),
            ("Metal", "Figure", "metalwork"),
            ("Stone-Sculpture", "Relief", "sculpture"),
            ("Ceramics", "Jar", "ceramic"),
        ),
        ("Sumerian", "Assyrian", "Achaemenid", "Elamite"),
    ),
    4: _generic(
        (
            ("Swords", "Sword", "metalwork"),
            ("Firearms", "Flintlock gun", "metalwork"),
            ("Armor for Man", "Armor", "metalwork"),
            ("Helmets", "Helmet", "metalwork"),
        ),
        ("Japanese", "German", "Italian, Milan", "French"),
    ),
    5: _generic(
        (
            ("Sculpture", "Figure", "sculpture"),
            ("Wood-Sculpture", "Mask", "sculpture"),
            ("Metal-Ornaments", "Ornament", "metalwork"),
            ("Ceramics-Containers", "Vessel", "ceramic"),
        ),
        ("Asante peoples", "Maya", "Moche", "Yoruba peoples", "Aztec"),
    ),
    6: _asian,
    7: _generic(
        (
            ("Metalwork", "Reliquary", "metalwork"),
            ("Glass-Stained", "Panel", "generic"),
            ("Sculpture", "Statue", "sculpture"),
        ),
        ("French", "German", "Spanish"),
    ),
    8: _generic(
        (("", "Evening dress", "textile"), ("", "Dress", "textile"), ("Shoes", "Shoes", "generic")),
        ("American", "French", "British"),
    ),
    9: _generic(
        (
            ("Prints", "Print", "print"),
            ("Drawings", "Drawing", "print"),
            ("Ornament & Architecture", "Print", "print"),
            ("Books", "Book", "print"),
        ),
        ("", "", "French"),
    ),
    10: _generic(
        (
            ("", "Statue", "sculpture"),
            ("", "Amulet", "generic"),
            ("Stone-Reliefs", "Relief", "sculpture"),
        ),
        ("", ""),
    ),
    11: _european_paintings,
    12: _generic(
        (
            ("Ceramics-Porcelain", "Vase", "ceramic"),
            ("Metalwork-Silver", "Teapot", "metalwork"),
            ("Furniture", "Commode", "generic"),
            ("Textiles-Woven", "Tapestry", "textile"),
        ),
        ("French", "British", "German", "Italian"),
    ),
    13: _generic(
        (
            ("Vases", "Amphora", "ceramic"),
            ("Bronzes", "Statuette", "metalwork"),
            ("Stone Sculpture", "Head", "sculpture"),
            ("Terracottas", "Figure", "sculpture"),
        ),
        ("Greek, Attic", "Roman", "Etruscan", "Cypriot"),
    ),
    14: _islamic,
    15: _generic(
        (
            ("Drawings", "Drawing", "print"),
            ("Plaquettes", "Plaquette", "metalwork"),
            ("Ceramics", "Dish", "ceramic"),
        ),
        ("", ""),
    ),
    16: _generic((("Books", "Book", "print"),), ("",), tail=0.0),
    17: _generic(
        (
            ("Enamels", "Plaque", "metalwork"),
            ("Textiles-Tapestries", "Tapestry", "textile"),
            ("Manuscripts and Illuminations", "Leaf", "print"),
        ),
        ("French", "Byzantine", "German"),
    ),
    18: _generic(
        (
            ("Chordophone-Lute-plucked-fretted", "Guitar", "generic"),
            ("Aerophone-Reed Vibrated", "Oboe", "generic"),
        ),
        ("American", "Italian", "Japanese"),
    ),
    19: _generic((("Photographs", "Photograph", "photograph"),), ("", "American", "French"), tail=0.0),
    21: _generic(None, ("",)),
}
