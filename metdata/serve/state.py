"""What one server worker process holds: the run's model (loaded after the fork, in a thread,
then warmed up with one prediction) and, with ``--data``, the validation side of the run's
split scored once (for random paintings and the confusion matrix).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from metdata.errors import UserError
from metdata.net import fetch
from metdata.net.pacing import MET_IMAGE_HOST
from metdata.predict import evaluation, prediction
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.storage.layout import DEFAULT_STORE
from metdata.storage.objects import objects_table
from metdata.train import runfolder

log = logging.getLogger(__name__)

#: validation images kept in memory per worker (a deterministic sample beyond it)
MAX_VALIDATION = 2000
BATCH = 64


@dataclass(frozen=True)
class ServeConfig:
    """What ``metdata serve`` serves and its limits.

    Attributes:
        run: the run folder (local or s3://); data: its dataset root, or None.
        storage_options: fsspec options for both.
        checkpoint: best.keras or model.keras.
        max_bytes: the largest image accepted (upload or download).
        max_pixels: the most pixels an image may have (checked from its header).
        allowed_hosts: hosts an image URL may name (``host`` or ``host:port``).
        fetch_deadline: seconds to download an image URL, whole.
        top: classes in an answer's ``top``.
    """

    run: str
    data: str | None = None
    storage_options: dict = field(default_factory=dict, hash=False)
    checkpoint: str = "best.keras"
    max_bytes: int = 20 << 20
    max_pixels: int = 40_000_000
    allowed_hosts: frozenset[str] = frozenset({MET_IMAGE_HOST})
    fetch_deadline: float = 20.0
    top: int = 3

    @property
    def run_name(self) -> str:
        """The run as an answer names it: its folder's name, never its path on the server."""
        return self.run.rstrip("/").rsplit("/", 1)[-1] or "run"

    def public(self, text: str) -> str:
        """``text`` with the run's and the dataset's locations replaced by their names."""
        urls = {u.rstrip("/") for u in (self.run, self.data) if u}
        urls |= {os.path.abspath(u) for u in urls if "://" not in u}  # a local path as a message may spell it
        for url in sorted(urls, key=len, reverse=True):
            text = text.replace(url, url.rsplit("/", 1)[-1] or "run")
        return text

    @property
    def limits(self) -> fetch.Policy:
        return fetch.Policy(self.allowed_hosts, deadline=self.fetch_deadline, max_bytes=self.max_bytes, max_redirects=3)


@dataclass
class Validation:
    """The validation side of the run's split, scored.

    Attributes:
        rows: per image: objectID, title, culture, objectURL, truth (class name).
        pixels: (N, S, S, 3) uint8, as the store holds them.
        truth: (N,) class indices; probabilities: (N, classes).
        matrix: the confusion matrix (row true, column predicted).
    """

    rows: list[dict]
    pixels: np.ndarray
    truth: np.ndarray
    probabilities: np.ndarray
    matrix: np.ndarray

    @property
    def guess(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def cell(self, true: int, predicted: int) -> np.ndarray:
        """Indices of the images of class ``true`` predicted as ``predicted``."""
        return np.flatnonzero((self.truth == true) & (self.guess == predicted))


def load_validation(predictor: prediction.Predictor, data: Dataset, score) -> Validation:
    """Read the validation side of the run's split from the store and score it with ``score``.

    Raises:
        UserError: no split in RUN, no store, or a store whose slots hold other objects
            (``--data`` is not the dataset the run was trained on).
    """
    run = Dataset(predictor.url, data.storage_options)
    val = runfolder.read_split(run, side="val", classes=predictor.classes)
    if len(val) > MAX_VALIDATION:
        val = [val[i] for i in np.linspace(0, len(val) - 1, MAX_VALIDATION).astype(int)]
    if not val:
        raise UserError(f"{predictor.url}'s split has no validation image")
    store = ImageStore.open(data, predictor.meta.get("store", DEFAULT_STORE))
    slots = np.array([r["slot"] for r in val])
    stored = store.ids_of(slots)
    wanted = np.array([r["objectID"] for r in val])
    if not np.array_equal(stored, wanted):
        raise UserError(
            f"the store under {data.url} holds other objects than {predictor.url}'s split: "
            "give --data the dataset this run was trained on"
        )
    pixels = store.pixels(slots)
    meta = _metadata(data, set(wanted.tolist()))
    rows = [{"objectID": int(r["objectID"]), "truth": r["class"], **meta.get(int(r["objectID"]), {})} for r in val]
    probabilities = np.concatenate([score(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)])
    truth = np.array([predictor.classes.index(r["class"]) for r in val])
    matrix = evaluation.confusion(truth, probabilities.argmax(axis=1), len(predictor.classes))
    log.info("scored %d validation images: accuracy %.3f", len(val), np.trace(matrix) / len(val))
    return Validation(rows, pixels, truth, probabilities, matrix)


def _metadata(data: Dataset, ids: set[int]) -> dict[int, dict]:
    """title, culture and objectURL of the given objects, from the objects/ shards."""
    table = objects_table(data, ["objectID", "title", "culture", "objectURL"], ids)
    return {int(row.pop("objectID")): {k: v or "" for k, v in row.items()} for row in table.to_pylist()}


def run_facts(run_url: str, storage_options: dict | None = None) -> dict:
    """What the dashboard says about a run beyond run.json: training images per class (from
    split.parquet) and when run.json was written (ISO time, or "")."""
    run = Dataset(run_url, storage_options or {})
    counts: dict[str, int] = {}
    if run.exists(runfolder.SPLIT):
        for row in run.read_table(runfolder.SPLIT, columns=["class", "side"]).to_pylist():
            if row["side"] == "train":
                counts[row["class"]] = counts.get(row["class"], 0) + 1
    info = run.fs.info(run.path(runfolder.RUN_FILE))
    when = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(when, int | float):
        when = dt.datetime.fromtimestamp(when, dt.UTC)
    return {
        "train_counts": dict(sorted(counts.items())),
        "trained": when.strftime("%Y-%m-%d %H:%M UTC") if when else "",
    }


class Worker:
    """One worker process's model and validation set, loaded in a background thread so the
    process answers ``/healthz`` at once and ``/readyz`` only when the model has answered one
    warm-up prediction. Predictions are serialized (one model call at a time per process).
    """

    def __init__(self, config: ServeConfig):
        self.config = config
        self.predictor: prediction.Predictor | None = None
        self.validation: Validation | None = None
        self.error: str | None = None
        self.validation_error: str | None = None
        self.ready = threading.Event()
        self.validation_done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._facts: dict | None = None

    def start(self) -> Worker:
        """Start loading (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="metdata-serve-load", daemon=True)
            self._thread.start()
        return self

    def _load(self) -> None:
        config = self.config
        try:
            predictor = prediction.load(config.run, config.storage_options, config.checkpoint)
            predictor.probabilities(np.zeros((1, predictor.size, predictor.size, 3), np.uint8))  # warm-up
            self.predictor = predictor
            self.ready.set()
        except Exception as exc:  # any failure must show on /healthz, or the worker says "loading" forever
            self.error = config.public(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, (UserError, OSError, ValueError)):
                log.error("cannot load %s: %s", config.run, self.error)
            else:
                log.exception("cannot load %s (unexpected)", config.run)
            self.validation_done.set()
            return
        if config.data is None:
            self.validation_error = "start the server with --data ROOT (the run's dataset) for validation paintings"
        else:
            try:
                self.validation = load_validation(predictor, Dataset(config.data, config.storage_options), self.score)
            except Exception as exc:  # the dashboard must stop waiting for them, whatever happened
                self.validation_error = config.public(f"{exc}")
                if isinstance(exc, (UserError, OSError, ValueError, KeyError)):
                    log.error("no validation paintings: %s", exc)
                else:
                    log.exception("no validation paintings (unexpected)")
        self.validation_done.set()

    def facts(self) -> dict:
        """``run_facts`` of the run, read once."""
        if self._facts is None:
            self._facts = run_facts(self.config.run, self.config.storage_options)
        return self._facts

    def score(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities of (N, S, S, 3) images, one model call at a time."""
        with self._lock:
            return self.predictor.probabilities(pixels)

    def gradcam(self, pixels: np.ndarray, class_index: int) -> np.ndarray:
        """The Grad-CAM heat map of one image for a class."""
        with self._lock:
            return self.predictor.gradcam(pixels, class_index)

    def about(self) -> dict:
        """The model part of an answer: the run named by its name, not by its path on the server."""
        return {**self.predictor.about(), "run": self.config.run_name}

    def answer(self, pixels: np.ndarray) -> dict:
        """The API's answer for one prepared image: classes, probabilities, top, model."""
        p = self.score(pixels[None])[0]
        ranked = prediction.ranked(self.predictor.classes, p, self.config.top)
        return {"classes": self.predictor.classes, **ranked, "model": self.about()}
