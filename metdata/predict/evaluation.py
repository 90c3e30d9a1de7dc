"""Evaluation: metrics as pure functions over class indices (the confusion matrix, per-class
precision/recall/F1, the report; NumPy only), and ``evaluate``, which scores a run's model
(``prediction.load``) on its split's images in a store, matched by object id, and writes the
report and its confusion figure to RUN.
"""

from __future__ import annotations

import numpy as np

from metdata.core import figures
from metdata.core.targets import resolve
from metdata.errors import UserError
from metdata.predict import prediction
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.train import stream, training
from metdata.train.runfolder import RunMismatch, read_split


def confusion(truth: np.ndarray, guess: np.ndarray, k: int) -> np.ndarray:
    """A k x k matrix: row = true class, column = predicted class.

    >>> confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3).tolist()
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    """
    matrix = np.zeros((k, k), int)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(guess, int)), 1)
    return matrix


def per_class(matrix: np.ndarray, classes: list[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support of each class (0.0 where undefined).

    >>> per_class(np.array([[1, 1], [0, 2]]), ["a", "b"])["b"]
    {'precision': 0.6666666666666666, 'recall': 1.0, 'f1': 0.8, 'support': 2}
    """
    out = {}
    for i, name in enumerate(classes):
        tp, predicted, actual = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(actual)}
    return out


def report(truth: np.ndarray, guess: np.ndarray, classes: list[str], side: str, checkpoint: str) -> dict:
    """The evaluation report (evaluation-<side>.json): accuracy, confusion matrix, per-class metrics.

    >>> report(np.array([0, 1]), np.array([0, 0]), ["a", "b"], "val", "best.keras")["accuracy"]
    0.5
    """
    truth, guess = np.asarray(truth, int), np.asarray(guess, int)
    matrix = confusion(truth, guess, len(classes))
    return {
        "split": side,
        "checkpoint": checkpoint,
        "images": len(truth),
        "accuracy": float((truth == guess).mean()) if len(truth) else 0.0,
        "classes": list(classes),
        "confusion": matrix.tolist(),
        "per_class": per_class(matrix, list(classes)),
    }


class OtherData(RunMismatch):
    """evaluate was given another store than the run was trained on."""


def evaluate(
    data: Dataset,
    run_url: str,
    side: str = "val",
    checkpoint: str = "best.keras",
    store: str | None = None,
    allow_other_data: bool = False,
) -> dict:
    """Accuracy, per-class precision/recall/F1 and a confusion matrix of a run's model on the
    images of its split's ``side`` (val, train or all), found in ``store`` by object id.

    Writes ``evaluation-<side>.json`` and ``confusion-<side>.png`` to RUN for the store the run
    was trained on; for another store (``allow_other_data``), ``evaluation-<side>-<id>.json``
    named after that store's fingerprint id, so the run's own evaluation is never overwritten.

    Raises:
        OtherData: ``store`` is not the one the run was trained on (and not allowed).
        UserError: other image size, another target's classes, no image of the side in the store.
    """
    predictor = prediction.load(run_url, data.storage_options, checkpoint)
    meta = predictor.meta
    store = store or meta["store"]
    images = ImageStore.open(data, store)  # once: the fingerprint, the slots and the stream read it
    scored = images.fingerprint
    trained = meta.get("fingerprint")
    same = scored["id"] == trained["id"] if trained else (data.url, store) == (meta["data"], meta["store"])
    if not same and not allow_other_data:
        raise OtherData(
            f"{run_url} was trained on {meta['data']}/{meta['store']} "
            f"(fingerprint {trained['id'] if trained else 'not recorded'}), not on {data.url}/{store} "
            f"(fingerprint {scored['id']}, {scored['objects']} objects, created {scored['created_at']}). "
            "Evaluate on the run's own data, or add --allow-other-data to score this store's images of the "
            "split's objects (matched by object id)"
        )
    if scored["size"] != meta["size"]:
        raise UserError(
            f"{data.url}/{store} holds {scored['size']}x{scored['size']} images; {run_url} was trained on "
            f"{meta['size']}x{meta['size']}: evaluate on a store built with 'metdata images --size {meta['size']}' "
            "(give it another --store name)"
        )
    run = Dataset(run_url, data.storage_options)
    chosen = [r["objectID"] for r in read_split(run, ["objectID", "side"], side)]
    slots = training.load_slots(images, resolve(meta["target"]))
    if same and tuple(meta["classes"]) != slots.classes:
        raise RunMismatch(f"the store's classes {slots.classes} differ from the run's {meta['classes']}")
    slots = _as_run_classes(slots.take(np.isin(slots.object_id, chosen)), predictor.classes)
    if not len(slots):
        raise UserError(f"no image of side {side!r} of {run_url}'s split is in {data.url}/{store}")
    batches = stream.build_dataset(images, slots, stream.InputOptions(256, shuffle=False))
    truth, guess = [], []
    with stream.reading_chunks():
        for x, y in batches:
            truth.append(y.numpy())
            guess.append(predictor.probabilities(x).argmax(axis=1))
    scores = report(np.concatenate(truth), np.concatenate(guess), predictor.classes, side, checkpoint)
    scores = {
        "split": side,
        "checkpoint": checkpoint,
        "data": scored,
        "trained_on_this_data": same,
        "split_objects": len(chosen),
        **scores,
    }
    name = side if same else f"{side}-{scored['id'][:8]}"
    run.write_json(f"evaluation-{name}.json", scores)
    figure = figures.draw_confusion(np.array(scores["confusion"]), predictor.classes)
    run.write_bytes(f"confusion-{name}.png", figures.png_bytes(figure))
    return scores


def _as_run_classes(slots: training.Slots, classes: list[str]) -> training.Slots:
    """The slots labelled by the run's class indices; images of classes the run does not know are dropped."""
    index = {c: i for i, c in enumerate(classes)}
    mapping = np.array([index.get(c, -1) for c in slots.classes], np.int32)
    label = mapping[slots.label]
    keep = label >= 0
    return training.Slots(
        slots.slot[keep],
        slots.object_id[keep],
        label[keep],
        slots.sha256[keep],
        tuple(classes),
        slots.size,
        slots.resize,
        slots.chunk,
    )
