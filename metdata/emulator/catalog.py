"""The emulator's two catalogs behind one interface: synthetic (drawn) and replay (recorded).

A catalog answers five questions: which ids the listing holds under its filters, the JSON
body of one object, the bytes of one image-host path, whether an id is withdrawn, and (for the
search index and the Open Access CSV) every record, one at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from metdata.core.schema import department_of_record
from metdata.emulator.search import SearchIndex
from metdata.emulator.synthetic import ImageSpec, SyntheticCatalog

log = logging.getLogger(__name__)

#: The most bytes of drawn images a synthetic catalog keeps on disk (a 500,000-object catalog's
#: web-large images take about 7 GB).
CACHE_BYTES = 8 << 30
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
}


@dataclass(frozen=True)
class Image:
    """One image-host answer: its bytes and content type."""

    body: bytes
    content_type: str


class _Searchable:
    """The search index of a catalog, built from its ``search_records()`` on first use, once."""

    _search: SearchIndex | None = None
    _search_lock = threading.Lock()

    def search_records(self) -> Iterator[dict]:  # pragma: no cover - each catalog has its own
        raise NotImplementedError

    def has_museum_image(self, record: dict) -> bool:  # pragma: no cover - each catalog has its own
        raise NotImplementedError

    @property
    def search_index(self) -> SearchIndex:
        """The index, built by the first caller (others wait for it): about 5 s per 100,000 synthetic records."""
        if self._search is None:
            with self._search_lock:
                if self._search is None:
                    started = time.perf_counter()
                    self._search = SearchIndex(self.search_records(), self.has_museum_image)
                    log.info(
                        "search index: %d records in %.1f s, %d MB of arrays",
                        len(self._search),
                        time.perf_counter() - started,
                        self._search.nbytes() >> 20,
                    )
        return self._search


class ReplayCatalog(_Searchable):
    """Recorded responses served verbatim: ``DIR/objects/<id>.json`` (or ``DIR/<id>.json``)
    and image files under ``DIR/images/CRDImages/...``.

    Args:
        root: the catalog folder.

    Raises:
        ValueError: if the folder holds no ``<id>.json`` file, or a file is not a record.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._search_lock = threading.Lock()
        folder = self.root / "objects" if (self.root / "objects").is_dir() else self.root
        self._files: dict[int, Path] = {}
        self._meta: dict[int, tuple[int | None, str]] = {}
        for path in sorted(folder.glob("*.json")):
            if not path.stem.isdigit():
                continue
            try:
                record = json.loads(path.read_bytes())
                object_id = int(record["objectID"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path} is not a Met object record ({exc}); remove it or fix it") from exc
            self._files[object_id] = path
            self._meta[object_id] = (
                department_of_record(record.get("department", "")),
                record.get("metadataDate", "")[:10],
            )
        if not self._files:
            raise ValueError(
                f"no <objectID>.json files in {folder}; a replay catalog holds "
                "recorded API responses as objects/<objectID>.json"
            )

    def __len__(self) -> int:
        return len(self._files)

    def listing(self, department_ids: set[int] | None, since: dt.date | None) -> list[int]:
        """Return the ids kept by the listing filters."""
        return [
            i
            for i, (dept, date) in self._meta.items()
            if (department_ids is None or dept in department_ids) and (since is None or date >= since.isoformat())
        ]

    def record_bytes(self, object_id: int) -> bytes | None:
        """Return the recorded body of an object, byte for byte, or None."""
        path = self._files.get(object_id)
        return path.read_bytes() if path else None

    def image(self, path: str) -> Image | None:
        """Return the recorded file at an image-host path (case-sensitive), or None.

        Only files under ``DIR/images/`` are served: a path climbing out of it (``..``, a symlink) is unknown.
        """
        images = (self.root / "images").resolve()
        file = (images / path.lstrip("/")).resolve()
        if not file.is_relative_to(images) or not file.is_file():
            return None
        return Image(file.read_bytes(), CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream"))

    def csv_ids(self, until: dt.date) -> list[int]:
        """The listed ids last updated before ``until``, in id order (the rows of the Open Access CSV)."""
        return sorted(i for i, (_, date) in self._meta.items() if date < until.isoformat())

    def record(self, object_id: int) -> dict | None:
        """The parsed record of an id, or None."""
        body = self.record_bytes(object_id)
        return json.loads(body) if body is not None else None

    def search_records(self) -> Iterator[dict]:
        """Every recorded record, parsed one at a time (a replay catalog has no withdrawn records)."""
        for path in self._files.values():
            yield json.loads(path.read_bytes())

    def is_withdrawn(self, object_id: int) -> bool:
        """A replay catalog holds no withdrawn records."""
        return False

    def has_museum_image(self, record: dict) -> bool:
        """A recorded object has an image when its record links one."""
        return bool(record.get("primaryImage"))

    def close(self) -> None:
        """Nothing to release: recorded files are read on each request."""


class DrawingCache:
    """Encoded image files, drawn once: kept on disk in a temporary folder (the OS page cache
    keeps the busy ones in memory, so the emulator's own memory stays flat), removed by
    ``close()``, when the cache is collected, or at exit.

    Drawing costs 15-30 ms of CPU per web-large image; reading the file back, tens of µs. A
    whole catalog fits: web-large JPEGs average about 50 KB, so 20,000 ids (about 5,400 images)
    take about 270 MB. Past ``max_bytes`` on disk, new drawings are not kept (they are drawn on
    every request) rather than filling the disk.

    Args:
        max_bytes: the most bytes kept on disk.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.stored_bytes = 0
        self.draws = 0
        self._folder: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        """The cache folder, created on the first drawing."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="metdata-fake-met-images-"))
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
            return self._folder

    def get(self, key: object, draw: Callable[[], bytes]) -> bytes:
        """Return the bytes stored for ``key`` (any value with a stable ``repr``), calling
        ``draw()`` to make them the first time."""
        file = self.folder / hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
        try:
            return file.read_bytes()
        except FileNotFoundError:
            pass
        body = draw()
        with self._lock:
            self.draws += 1
            keep = self.stored_bytes + len(body) <= self.max_bytes
            self.stored_bytes += len(body) if keep else 0
        if keep:  # written aside then renamed: a concurrent reader sees the whole file or none
            partial = file.with_suffix(f".{threading.get_ident()}.part")
            try:
                partial.write_bytes(body)
                os.replace(partial, file)
            except OSError as exc:  # closed meanwhile, or the disk is full: serve the drawing anyway
                log.debug("drawing not kept: %s", exc)
                partial.unlink(missing_ok=True)
        return body

    def close(self) -> None:
        """Remove the folder; a later drawing starts a new one."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._folder, self._finalizer, self.stored_bytes = None, None, 0


class Synthetic(SyntheticCatalog, _Searchable):
    """The synthetic catalog with its images drawn on demand, each once (see ``DrawingCache``).

    Args:
        n, seed, mix: as for ``SyntheticCatalog``.
        cache_bytes: the most bytes of drawn images kept on disk.
    """

    def __init__(self, n: int, seed: int = 0, mix: str = "real", cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__(n, seed, mix)
        self._search_lock = threading.Lock()
        self.drawings = DrawingCache(cache_bytes)

    def image(self, path: str) -> Image | None:  # type: ignore[override]
        """Return the drawn image at an image-host path, or None if the path is unknown."""
        spec = super().image(path)
        if spec is None:
            return None
        original = "/original/" in path
        body = self.drawings.get((spec, original), lambda: render(spec, original).body)
        return Image(body, "image/png" if spec.fmt == "png" else "image/jpeg")

    def close(self) -> None:
        """Remove the drawn images from disk."""
        self.drawings.close()


def render(spec: ImageSpec, original: bool) -> Image:
    """Draw and encode one image file: web-large as specified, originals ``spec.scale`` larger."""
    from metdata.emulator import artwork  # drawing code loads with the first image

    scale = spec.scale if original else 1.0
    width, height = round(spec.width * scale), round(spec.height * scale)
    pixels = artwork.render_artwork(spec.style, spec.seed, width, height)
    if spec.gray:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    if spec.fmt == "png":
        ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        ctype = "image/png"
    else:
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 88])
        ctype = "image/jpeg"
    if not ok:  # pragma: no cover - OpenCV only fails here on a broken build
        raise RuntimeError(f"OpenCV could not encode {spec}")
    return Image(encoded.tobytes(), ctype)


def open_catalog(
    objects: int, seed: int, catalog: Path | None, cache_bytes: int = CACHE_BYTES, mix: str = "real"
) -> Synthetic | ReplayCatalog:
    """Return the replay catalog at ``catalog`` if given, else a synthetic one."""
    if catalog is not None:
        return ReplayCatalog(catalog)
    return Synthetic(objects, seed, mix, cache_bytes)
