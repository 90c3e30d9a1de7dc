"""Training data: labelled slots of the image store, a leak-free split, class weights.

Pure (NumPy and Arrow); the ``tf.data`` input over the slots is ``metdata.train.stream``. Importing this
module never starts TensorFlow.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from metdata.core.targets import Target, label_table
from metdata.errors import UserError
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.storage.objects import objects_table

log = logging.getLogger(__name__)

TRAIN, VAL = "train", "val"


class TrainingDataError(UserError):
    """The image store cannot be trained on as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Slots:
    """The store's usable slots: one row per valid image inside the target.

    Attributes:
        slot: index in the Zarr arrays (sorted).
        object_id: the object's id.
        label: index into ``classes``.
        sha256: the image bytes' digest ("" when unknown).
        classes: the class names, sorted.
        size: side of the square images.
        resize: the resize mode the store was built with.
        chunk: images per Zarr chunk.
    """

    slot: np.ndarray
    object_id: np.ndarray
    label: np.ndarray
    sha256: np.ndarray
    classes: tuple[str, ...]
    size: int
    resize: str
    chunk: int

    def __len__(self) -> int:
        return len(self.slot)

    def take(self, mask: np.ndarray) -> Slots:
        """The slots where ``mask`` is true."""
        return Slots(
            self.slot[mask],
            self.object_id[mask],
            self.label[mask],
            self.sha256[mask],
            self.classes,
            self.size,
            self.resize,
            self.chunk,
        )

    def counts(self) -> dict[str, int]:
        """Images per class (every class, zeros included)."""
        found = np.bincount(self.label, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, found, strict=True)}


def load_slots(store: ImageStore, target: Target) -> Slots:
    """Label the valid slots of the store through the target (skipping invalid or unlabelled ones).

    Raises:
        TrainingDataError: no valid image, or fewer than two classes present.
    """
    ids, valid, name, dataset = store.object_id, store.valid, store.name, store.dataset
    if not valid.any():
        raise TrainingDataError(
            f"no image was built in {name!r} under {dataset.url}: run (or rerun) 'metdata images' and check "
            "images/_summary.json for the failures"
        )
    table = objects_table(dataset, ["objectID", *target.columns])
    labels = dict(zip(table["objectID"].to_pylist(), label_table(table, target).to_pylist(), strict=True))
    names = [labels.get(int(i)) if ok else None for i, ok in zip(ids, valid, strict=True)]
    keep = np.array([n is not None for n in names], bool)
    classes = tuple(sorted({n for n in names if n is not None}))
    if len(classes) < 2:
        raise TrainingDataError(
            f"the store {name!r} holds images of {len(classes)} class(es) of target {target.name!r} "
            f"({', '.join(classes) or 'none'}): a classifier needs at least two; build the store with "
            f"'metdata images --target {target.name}' on more objects"
        )
    index = {c: i for i, c in enumerate(classes)}
    digests = store.digests
    slot = np.flatnonzero(keep)
    return Slots(
        slot=slot,
        object_id=ids[slot],
        label=np.array([index[names[s]] for s in slot], np.int32),
        sha256=np.array([digests.get(int(ids[s]), "") for s in slot], object),
        classes=classes,
        size=store.size,
        resize=store.resize,
        chunk=store.chunk,
    )


def unit_hash(object_id: int) -> float:
    """A stable number in [0, 1) from an object id (the same on every machine and run).

    >>> unit_hash(436535) == unit_hash(436535) and 0 <= unit_hash(436535) < 1
    True
    """
    digest = hashlib.blake2b(str(int(object_id)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split(slots: Slots, val_fraction: float) -> np.ndarray:
    """Which side each slot is on: a boolean array, true for validation.

    Deterministic and stratified: within each class, the images are ranked by
    ``unit_hash(objectID)`` and the first ``round(val_fraction * n)`` go to validation (at least
    one when a class has two or more images, never all). Leak-free: images with the same
    sha256 form a group that goes whole to the side of its smallest objectID.

    >>> s = Slots(np.arange(4), np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1], np.int32),
    ...           np.array(["a", "a", "b", "c"], object), ("x", "y"), 8, "squash", 4)
    >>> v = split(s, 0.5)
    >>> bool(v[0] == v[1]) and int(v[2:].sum()) == 1
    True
    """
    check_val_fraction(val_fraction)
    # the representative of each slot: the smallest objectID with the same digest
    leader: dict[str, int] = {}
    for oid, digest in zip(slots.object_id.tolist(), slots.sha256.tolist(), strict=True):
        if digest:
            leader[digest] = min(oid, leader.get(digest, oid))
    rep = np.array(
        [leader[d] if d else oid for oid, d in zip(slots.object_id.tolist(), slots.sha256.tolist(), strict=True)],
        np.int64,
    )
    leaders = rep == slots.object_id
    side: dict[int, bool] = {}
    for label in range(len(slots.classes)):
        mine = slots.object_id[leaders & (slots.label == label)]
        if not len(mine) or not val_fraction:
            side.update(dict.fromkeys(mine.tolist(), False))
            continue
        ranked = sorted(mine.tolist(), key=lambda i: (unit_hash(i), i))
        n_val = min(len(ranked) - 1, max(1 if len(ranked) >= 2 else 0, round(val_fraction * len(ranked))))
        side.update({oid: k < n_val for k, oid in enumerate(ranked)})
    return np.array([side[r] for r in rep.tolist()], bool)


def check_val_fraction(val_fraction: float) -> None:
    """A validation share is a finite number in [0, 1).

    Raises:
        TrainingDataError: naming the value and the range (nan, inf and 1 included).
    """
    if not isinstance(val_fraction, int | float) or not math.isfinite(val_fraction) or not 0 <= val_fraction < 1:
        raise TrainingDataError(
            f"val_fraction {val_fraction!r} is not a share of the images: give a number from 0 (no validation) "
            "up to but not including 1, e.g. --val-fraction 0.2"
        )


@dataclass(frozen=True)
class Split:
    """The slots and their two sides, computed once (``divide``)."""

    slots: Slots
    is_val: np.ndarray
    train: Slots
    val: Slots

    def table(self) -> pa.Table:
        """The split as run folders keep it (``split_table``)."""
        return split_table(self.slots, self.is_val)


def divide(slots: Slots, val_fraction: float) -> Split:
    """The leak-free stratified split (``split``) of the slots, both sides checked (``check_split``).

    Raises:
        TrainingDataError: a bad share, or a class without training images.
    """
    is_val = split(slots, val_fraction)
    train, val = slots.take(~is_val), slots.take(is_val)
    check_split(train, val)
    return Split(slots, is_val, train, val)


@dataclass(frozen=True)
class RunData:
    """A run's data, read once: the store (opened once), its labelled slots and split, its fingerprint."""

    store: ImageStore
    split: Split
    fingerprint: dict


def prepare(data: Dataset, store: str, target: Target, val_fraction: float) -> RunData:
    """Open the store once, label its slots through the target, split them, take its fingerprint.

    Raises:
        NoStore: no such store under the root.
        TrainingDataError: no image, fewer than two classes, a class without training images.
    """
    images = ImageStore.open(data, store)
    split = divide(load_slots(images, target), val_fraction)
    return RunData(images, split, images.fingerprint)


def split_table(slots: Slots, is_val: np.ndarray) -> pa.Table:
    """The split as a table: objectID, class, side (``train``/``val``), sha256, slot."""
    return pa.table(
        {
            "objectID": pa.array(slots.object_id, pa.int64()),
            "class": pa.array([slots.classes[i] for i in slots.label], pa.string()),
            "side": pa.array(np.where(is_val, VAL, TRAIN).tolist(), pa.string()),
            "sha256": pa.array(slots.sha256.tolist(), pa.string()),
            "slot": pa.array(slots.slot, pa.int64()),
        }
    )


def check_split(train: Slots, val: Slots) -> None:
    """Every class needs training images.

    Raises:
        TrainingDataError: naming the classes without training images.
    """
    missing = [c for c, n in train.counts().items() if n == 0]
    if missing:
        raise TrainingDataError(
            f"no training image for class {', '.join(missing)} (all in validation or none built): "
            "build more images of it, or lower --val-fraction"
        )


def class_weights(slots: Slots) -> dict[int, float]:
    """Balanced class weights: ``n_samples / (n_classes * count)`` (as scikit-learn's "balanced").

    >>> s = Slots(np.arange(4), np.arange(4), np.array([0, 0, 0, 1], np.int32),
    ...           np.array([""] * 4, object), ("a", "b"), 8, "squash", 4)
    >>> class_weights(s)
    {0: 0.6666666666666666, 1: 2.0}
    """
    counts = np.bincount(slots.label, minlength=len(slots.classes))
    n, k = int(counts.sum()), len(slots.classes)
    return {i: (n / (k * int(c)) if c else 0.0) for i, c in enumerate(counts)}
