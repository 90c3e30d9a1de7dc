"""The exploration report's HTML: each section's tables and figures, rendered by one Jinja2 template.

The section functions turn counts (:mod:`metdata.core.counts`) into the values a section shows and draw
its figures (:mod:`metdata.core.figures`); :func:`render` fills ``metdata/explore/templates/report.html.j2``
(package data) with them. The template escapes every value it prints, and every figure is
embedded as a PNG data URI, so the report is one self-contained file.
"""

from __future__ import annotations

import base64
import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jinja2
import numpy as np
import pyarrow as pa

from metdata.core import figures
from metdata.core.counts import (
    NO_CLASS,
    classification_counts,
    counts,
    failures,
    image_sizes,
    ranked,
    target_counts,
)
from metdata.core.statuses import WITH_RECORD
from metdata.core.targets import Target

if TYPE_CHECKING:
    from metdata.storage.imagestore import ImageStore

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Figure:
    """A rendered figure: its file name (without ``.png``), its PNG bytes and its caption."""

    name: str
    png: bytes = field(repr=False)
    caption: str

    @property
    def data(self) -> str:
        """The PNG in base64, for a data URI."""
        return base64.b64encode(self.png).decode("ascii")


@dataclass
class Report:
    """The report being assembled: each section's values for the template, and the figures' PNG bytes
    in report order."""

    sections: dict[str, dict] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)

    def figure(self, name: str, fig, caption: str) -> Figure:
        """Render and keep a figure (closing it)."""
        self.figures[name] = figures.png_bytes(fig)
        return Figure(name, self.figures[name], caption)


def number(value: object) -> str:
    """A value as the report prints it: whole numbers with thousands separators.

    >>> number(1234567), number("ok"), number(True)
    ('1,234,567', 'ok', 'True')
    """
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def share(n: int, total: int) -> str:
    """``n`` as a percentage of ``total``.

    >>> share(1, 3), share(0, 0)
    ('33.3 %', '-')
    """
    return f"{100 * n / total:.1f} %" if total else "-"


def status_rows(counter: Mapping, failed: Sequence[dict]) -> list[tuple]:
    """The rows of a status table: status, count, share, and the most common reason (with its count).

    >>> status_rows({"ok": 3, "not_found": 1}, [{"status": "not_found", "reason": "HTTP 404", "reason_count": 1}])
    [('ok', 3, '75.0 %', ''), ('not_found', 1, '25.0 %', 'HTTP 404 (1)')]
    """
    total = sum(counter.values())
    reasons = {f["status"]: f for f in failed}
    rows = []
    for status, n in ranked(counter):
        why = reasons.get(status)
        text = f"{figures.short(why['reason'], 160)} ({why['reason_count']:,})" if why else ""
        rows.append((status, n, share(n, total), text))
    return rows


def collection_section(report: Report, collection: dict, images: ImageStore | None) -> None:
    """The collection at a glance: the headline counts and the records by department."""
    rows = [
        ("ids looked up (rows of objects/)", collection["objects"]),
        ("records (status ok or csv)", collection["records"]),
        ("records with an image URL", collection["with_image_url"]),
        ("public-domain records", collection["public_domain"]),
        ("departments", len(collection["departments"])),
    ]
    if images is not None:
        rows += [("image slots", len(images.object_id)), ("valid images", int(images.valid.sum()))]
    figure = report.figure("collection", figures.draw_collection(collection), "Records by department")
    report.sections["collection"] = {"rows": rows, "figure": figure}


def status_section(
    report: Report, table: pa.Table, collection: dict, images: ImageStore | None, missing: list[str]
) -> None:
    """What was fetched and what failed: ingestion statuses, image statuses (when built), and why."""
    section: dict = {"objects": status_rows(collection["statuses"], failures(table, WITH_RECORD))}
    image_statuses = None
    if images is None:
        section.update(notes=missing, images=None)
    else:
        image_statuses = dict(ranked(counts(images.statuses["status"])))
        rows = status_rows(image_statuses, failures(images.statuses))
        section.update(notes=[], images={"name": images.name, "rows": rows})
    figure = figures.draw_statuses(collection["statuses"], image_statuses)
    section["figure"] = report.figure("statuses", figure, "Statuses")
    report.sections["statuses"] = section


def classification_section(report: Report, table: pa.Table, merge: Target, top: int) -> None:
    """Records by raw classification, and by class once ``merge``'s rules merged the aliases."""
    raw, merged = classification_counts(table, merge)
    titles = (f"Raw classification ({len(raw):,} values)", f"Aliases merged by {merge.name} ({len(merged):,} classes)")
    figure = report.figure(
        "classifications",
        figures.draw_pair(raw, merged, titles, top),
        "Records by classification, raw and with aliases merged",
    )
    report.sections["classifications"] = {"raw": len(raw), "merge": merge.name, "merged": len(merged), "figure": figure}


def target_section(report: Report, table: pa.Table, target: Target, top: int) -> Counter:
    """The records the target selects, by raw value and by class; returns the class counts."""
    raw, classes = target_counts(table, target)
    selected = sum(classes.values())
    titles = (
        f"{target.name}: raw value ({' → '.join(target.fields)}), {len(raw):,} values",
        f"{target.name}: class after the rules",
    )
    figure = report.figure(
        "target",
        figures.draw_pair(raw, classes, titles, top),
        f"Records selected by {target.name}: raw value and class",
    )
    report.sections["target"] = {
        "name": target.name,
        "description": target.description,
        "selected": selected,
        "in_class": selected - classes.get(NO_CLASS, 0),
        "rows": [(cls, n, share(n, selected)) for cls, n in ranked(classes)],
        "figure": figure,
    }
    return classes


def images_section(
    report: Report,
    target: Target,
    images: ImageStore | None,
    missing: list[str],
    sample: tuple[np.ndarray, list[str]] | None,
    examples: tuple[dict[str, tuple[np.ndarray, list[str]]], dict[str, int]] | None,
    seed: int,
    per_class: int,
) -> None:
    """The images: a random sample, examples per class of the target, and the originals' sizes.

    Args:
        sample: the random sample's pixels and captions (None without a store).
        examples: per class, pixels and captions, and each class's number of valid images (None without a store).
    """
    if images is None:
        report.sections["images"] = {"store": None, "notes": missing}
        return
    valid = int(images.valid.sum())
    attrs = images.attrs
    store = {
        "name": images.name,
        "slots": len(images.object_id),
        "valid": valid,
        "size": attrs.get("size"),
        "resize": attrs.get("resize"),
        "rendition": attrs.get("rendition"),
    }
    pixels, captions = sample
    title = f"{len(pixels)} valid images drawn at random (seed {seed}) of {valid:,}; captions: objectID"
    sample_figure = report.figure(
        "sample_grid", figures.draw_grid(pixels, captions, 8, title), "A random sample of valid images"
    )
    by_class, totals = examples
    title = f"{target.name}: examples per class"
    if not target.classes:
        title += f" (its {len(by_class)} most frequent among the valid images)"
    grid = report.figure(
        "class_grid",
        figures.draw_class_grid(by_class, totals, per_class, title),
        f"Examples of each class of {target.name}",
    )
    sizes = report.figure(
        "image_sizes", figures.draw_sizes(image_sizes(images.statuses)), "Original image sizes and aspect ratios"
    )
    report.sections["images"] = {
        "store": store,
        "notes": missing,
        "sample": sample_figure,
        "target": target.name,
        "classes": [(c, totals.get(c, 0)) for c in by_class],
        "grid": grid,
        "sizes": sizes,
    }


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("metdata.explore", "templates"),
        autoescape=True,  # every value is escaped (the file name ends in .j2, not .html)
        undefined=jinja2.StrictUndefined,  # a misspelt name fails, never renders as nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = number
    return env


def render(report: Report, url: str, top: int, seed: int, made: str) -> str:
    """The report's HTML page: its sections in order, every figure embedded.

    ``report`` holds all five sections (``collection``, ``statuses``, ``classifications``,
    ``target``, ``images``); ``url``, ``top``, ``seed`` and ``made`` head the page.
    """
    template = _environment().get_template(TEMPLATE)
    return template.render(url=url, top=top, seed=seed, made=made, **report.sections)
