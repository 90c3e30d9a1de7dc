"""Exploration (``metdata explore``): what a dataset holds, as PNG figures and one self-contained HTML report.

``explore(dataset, options)`` reads only the metadata columns it needs (a 500,000-row
``objects/`` table: about 8 s and 0.5 GB at peak), the image status shards without their kept
originals, and from the images store only ``object_id``, ``valid`` and the few slots it shows.
Three modules do the rest: :mod:`metdata.core.counts` (pure counting over Arrow tables),
:mod:`metdata.core.figures` (matplotlib) and :mod:`metdata.explore.report` (the HTML, from a Jinja2 template).
Every file appears atomically, the HTML (figures embedded as data URIs) last. Without an images
store the metadata figures are still written, and the report says which command builds the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metdata.core.counts import NO_CLASS, URL_FIELD, class_slots, collection_counts, grid_classes, random_slots, ranked
from metdata.core.targets import Target, builtin, label_table, resolve
from metdata.explore import report
from metdata.storage import layout
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.storage.objects import objects_table

log = logging.getLogger(__name__)

#: The target whose labels merge classification aliases (Metal, Metal-Ornaments -> Metalwork).
MERGE_TARGET = "object-type"
REPORT = "report.html"
#: Every figure the report can hold, in report order (file name without ``.png``).
FIGURES = ("collection", "statuses", "classifications", "target", "sample_grid", "class_grid", "image_sizes")


@dataclass(frozen=True)
class ExploreOptions:
    """What the report shows and where it goes.

    Attributes:
        out: a local folder for the PNGs and ``report.html`` (created if missing).
        target: the target of the per-class grid and the rules figure (name or TOML path).
        top: how many categories the bar charts show.
        seed: seeds the choice of grid images.
        store: the images store under the root (its status shards: the same name without ``.zarr``).
        sample: images in the random grid; per_class: images per class; max_classes: rows of the class grid
            when the target has no fixed classes.
    """

    out: str
    target: str = "painting-culture"
    top: int = 20
    seed: int = 0
    store: str = layout.DEFAULT_STORE
    sample: int = 48
    per_class: int = 8
    max_classes: int = 8


def missing_parts(dataset: Dataset, store: str, target: Target, images: ImageStore | None) -> list[str]:
    """What the report cannot show because the images stage has not run (or not finished), and the fix."""
    command = f"metdata images --data {dataset.url}" + (f" --store {store}" if store != layout.DEFAULT_STORE else "")
    if images is None:
        return [
            f"No images store at {dataset.url}/{store}: the image statuses, the image grids and the image "
            f"size figures are missing. Build it with '{command}' (add --target {target.name} to take only the "
            "target's objects), then run this report again."
        ]
    if images.statuses.num_rows < len(images.object_id):
        return [
            f"The images stage has not finished: {images.statuses.num_rows:,} of {len(images.object_id):,} slots have "
            f"a status; the others show no image yet. Rerun '{command}' to finish it."
        ]
    return []


def random_sample(images: ImageStore, options: ExploreOptions) -> tuple[np.ndarray, list[str]]:
    """The pixels of ``options.sample`` valid slots drawn at random (seeded), and their objectIDs as captions."""
    slots = random_slots(images.valid, options.sample, options.seed)
    return images.pixels(slots), [str(images.object_id[s]) for s in slots]


def class_examples(
    table: pa.Table, target: Target, images: ImageStore, options: ExploreOptions
) -> tuple[dict[str, tuple[np.ndarray, list[str]]], dict[str, int]]:
    """Per class of the target: sample pixels and captions, and how many valid images it has."""
    valid_ids = images.object_id[images.valid]
    rows = table.filter(pc.is_in(table["objectID"], pa.array(valid_ids, pa.int64())))
    labels = label_table(rows, target).to_pylist()
    classes = grid_classes(target, labels, options.max_classes)
    totals = Counter(label for label in labels if label is not None)
    picks = class_slots(labels, classes, options.per_class, options.seed)
    ids = rows["objectID"].to_numpy()
    order = np.argsort(images.object_id, kind="stable")
    slot_of = order[np.searchsorted(images.object_id, ids, sorter=order)]
    by_class = {}
    for cls in classes:
        slots = [int(slot_of[i]) for i in picks[cls]]
        by_class[cls] = (images.pixels(slots), [str(images.object_id[s]) for s in slots])
    return by_class, {c: totals.get(c, 0) for c in classes}


def explore(dataset: Dataset, options: ExploreOptions) -> dict:
    """Write the figures and ``report.html`` into ``options.out``; return the report's path and counts.

    Each PNG is written atomically, then the HTML (every figure embedded); figures of an earlier
    run that this one could not draw are removed, so none contradicts the report.

    Raises:
        TargetError: an unknown target or a bad target file.
        NoMetadata: no metadata under the root (run ``metdata ingest`` first).
        DatasetError: a bad store name, or ``out`` would write into the root's own folders.
    """
    layout.store_paths(options.store)
    dataset.check_output(options.out, "--out")
    target = resolve(options.target)
    merge = builtin(MERGE_TARGET)
    columns = sorted(
        {"objectID", "status", "error", "department", "isPublicDomain", URL_FIELD, *merge.columns, *target.columns}
    )
    log.info("reading %d metadata columns of %s", len(columns), dataset.url)
    table = objects_table(dataset, columns)
    images = ImageStore.find(dataset, options.store)
    missing = missing_parts(dataset, options.store, target, images)
    for text in missing:
        log.warning("%s", text)

    page = report.Report()
    collection = collection_counts(table)
    report.collection_section(page, collection, images)
    report.status_section(page, table, collection, images, missing)
    report.classification_section(page, table, merge, options.top)
    classes = report.target_section(page, table, target, options.top)
    sample = random_sample(images, options) if images else None
    examples = class_examples(table, target, images, options) if images else None
    report.images_section(page, target, images, missing, sample, examples, options.seed, options.per_class)

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Dataset(str(out))  # its atomic writes
    for name, png in page.figures.items():
        folder.write_bytes(f"{name}.png", png)
    for name in FIGURES:
        if name not in page.figures:
            (out / f"{name}.png").unlink(missing_ok=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    folder.write_bytes(REPORT, report.render(page, dataset.url, options.top, options.seed, now).encode("utf-8"))
    path = out / REPORT
    log.info("wrote %s with %d figures", path, len(page.figures))
    return {
        "report": str(path),
        "objects": collection["objects"],
        "records": collection["records"],
        "with_image_url": collection["with_image_url"],
        "public_domain": collection["public_domain"],
        "image_slots": len(images.object_id) if images else None,
        "valid_images": int(images.valid.sum()) if images else None,
        "target_classes": dict([(str(c), n) for c, n in ranked(classes) if c != NO_CLASS][: options.top]),
        "figures": list(page.figures),
        "missing": missing,
    }
