"""Prediction: load a run's model, prepare an image exactly as the images stage did, score it.

``predict``, ``evaluate`` and ``serve`` call these functions, so one painting gets the same
probabilities from each: the bytes go through ``imaging.decode`` and ``imaging.resize`` with
the run's size and resize mode (the code that filled the store), and the model's own layers do
the rest (rescaling is inside the model). Grad-CAM (the keras.io recipe over the last
convolution) explains a prediction.

TensorFlow and Keras are imported only by the functions that need them (through
``metdata.train.quiet_tf``: without TensorFlow's start-up notices).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from metdata.core import imaging
from metdata.core.statuses import Status
from metdata.errors import UserError
from metdata.net import fetch
from metdata.storage.dataset import Dataset
from metdata.train.quiet_tf import tensorflow
from metdata.train.runfolder import HISTORY, RUN_FILE, check_checkpoint, local_copy

log = logging.getLogger(__name__)
#: the Met's image host: the only host a URL may name unless the server allows more


class ImageRejected(UserError):
    """An image (bytes, file or URL) that cannot be scored; ``status`` is the HTTP status that says why.

    400 not an image, 403 a host that is not allowed, 408 the download ran past its deadline,
    413 too many bytes or pixels, 422 the URL could not be downloaded.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def fetch_image_url(url: str, policy: fetch.Policy) -> bytes:
    """Download an image through the shared fetch core (``metdata.net.fetch``) under ``policy``:
    its hosts only, redirects included; at most ``max_bytes`` (after decompression);
    ``deadline`` seconds a request.

    Raises:
        ImageRejected: 400 not an http(s) URL, 403 a host (or a redirect's) that is not allowed,
            408 past the deadline, 413 over the byte cap, 422 any other failed download.
    """
    shown = fetch.shown(url)
    refused = fetch.refusal(url, policy)
    if refused:
        parts = urlsplit(url) if "malformed" not in refused else None
        if parts is None or parts.scheme.lower() not in policy.schemes or not parts.hostname:
            raise ImageRejected(f"{shown}: only http(s) URLs of an image can be read ({refused})", 400)
        raise ImageRejected(f"{refused}; download the image and upload the file instead", 403)
    started = time.monotonic()
    reply = fetch.fetch_one(url, policy)
    if reply.outcome is Status.TOO_LARGE:
        raise ImageRejected(f"{shown} is over the {policy.max_bytes:,} byte cap", 413)
    redirect_refused = fetch.refusal(reply.url, policy) if reply.outcome is Status.FAILED else ""
    if redirect_refused and reply.url != url:
        raise ImageRejected(f"{shown} redirects elsewhere: {redirect_refused}", 403)
    if reply.outcome is Status.TRANSIENT and time.monotonic() - started >= policy.deadline:
        raise ImageRejected(f"{shown} did not download within {policy.deadline:g} s", 408)
    answer = fetch.judge(reply)
    if answer.outcome is not Status.OK:
        detail = answer.error or f"HTTP {reply.status}"
        raise ImageRejected(f"cannot download {shown} ({answer.outcome.value}: {detail})", 422)
    return answer.payload


def prepare_image(data: bytes, size: int, mode: str, max_pixels: int = imaging.MAX_PIXELS) -> np.ndarray:
    """Bytes to the uint8 (S, S, 3) array the store would hold: ``imaging.decode`` then ``imaging.resize``.

    ``max_pixels`` (at most ``imaging.MAX_PIXELS``) refuses a larger image from its header, before decoding.

    Raises:
        ImageRejected: 400 not a decodable image, 413 too many pixels.
    """
    header = imaging.sniff(data)
    if header is None:  # only formats whose size is read from the header before decoding
        raise ImageRejected("not a JPEG or PNG image: send the painting as a JPEG or a PNG", 400)
    if header[1] * header[2] > max_pixels:
        raise ImageRejected(
            f"the image is {header[1]}x{header[2]} pixels, over the {max_pixels:,} pixel cap; send a smaller one", 413
        )
    try:
        rgb, _, _ = imaging.decode(data, size)
    except imaging.TooLarge as exc:
        raise ImageRejected(f"the image is too large: {exc}", 413) from exc
    except imaging.BadImage as exc:
        raise ImageRejected(f"not a usable image (JPEG or PNG): {exc}", 400) from exc
    return imaging.resize(rgb, size, mode)


def ranked(classes: list[str], probabilities: np.ndarray, top: int = 3) -> dict:
    """One image's answer: the ``top`` classes best first, and every class's probability.

    >>> ranked(["a", "b", "c"], np.array([0.2, 0.5, 0.3]), top=2)
    {'top': [{'class': 'b', 'probability': 0.5}, {'class': 'c', 'probability': 0.3}], \
'probabilities': {'a': 0.2, 'b': 0.5, 'c': 0.3}}
    """
    order = np.argsort(-probabilities, kind="stable")[:top]
    return {
        "top": [{"class": classes[i], "probability": float(probabilities[i])} for i in order],
        "probabilities": {c: float(v) for c, v in zip(classes, probabilities, strict=True)},
    }


def read_settings(run_url: str, storage_options: dict | None = None, checkpoint: str = "best.keras") -> dict:
    """A finished run's run.json, checked to name what prediction needs (no TensorFlow).

    Raises:
        UserError: no run.json or checkpoint there, or a run.json without classes, size or resize.
    """
    run = Dataset(run_url, storage_options or {})
    if not run.exists(RUN_FILE):
        raise UserError(f"{run_url} has no {RUN_FILE}: train a model there first ('metdata train --out {run_url}')")
    try:
        meta = run.read_json(RUN_FILE)
    except ValueError as exc:
        raise UserError(f"{run_url}/{RUN_FILE} is not JSON ({exc}); retrain into a fresh folder") from exc
    missing = [k for k in ("classes", "size", "resize") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise UserError(f"{run_url}/{RUN_FILE} lacks {', '.join(missing)}: it is not a metdata run folder")
    if not run.exists(checkpoint):
        raise UserError(f"{run_url} has no {checkpoint}: the run has not finished an epoch")
    return meta


@dataclass
class Predictor:
    """A run's model and settings, ready to score prepared images.

    Attributes:
        url: the run folder; meta: its run.json; history: its history.json (or []);
        checkpoint: the file the model came from; model: the Keras model.
    """

    url: str
    meta: dict
    model: object
    checkpoint: str = "best.keras"
    history: list = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def resize(self) -> str:
        return str(self.meta["resize"])

    def prepare(self, data: bytes, max_pixels: int = imaging.MAX_PIXELS) -> np.ndarray:
        """Image bytes to the (S, S, 3) array this run's store would hold (see ``prepare_image``)."""
        return prepare_image(data, self.size, self.resize, max_pixels)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 arrays to (N, classes) probabilities, in the order of ``classes``."""
        return np.asarray(self.model.predict_on_batch(np.asarray(pixels, np.uint8)))

    def gradcam(self, pixels: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """Grad-CAM of one (S, S, 3) image for a class (the predicted one by default): how much
        each place of the last convolution's output raised that class, as (h, w) floats in [0, 1].

        The keras.io recipe: the gradient of the class score with respect to the last conv
        layer's output, averaged per channel, weights the channels; negative evidence is cut.
        """
        import keras
        import tensorflow as tf

        conv = next((la for la in reversed(self.model.layers) if isinstance(la, keras.layers.Conv2D)), None)
        if conv is None:
            raise UserError(f"the model of {self.url} has no Conv2D layer: Grad-CAM needs one")
        grad_model = keras.Model(self.model.inputs, [conv.output, self.model.output])
        with tf.GradientTape() as tape:
            features, predictions = grad_model([np.asarray(pixels, np.uint8)[None]], training=False)
            index = int(tf.argmax(predictions[0])) if class_index is None else class_index
            score = predictions[:, index]
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(0, 1, 2))
        heat = tf.maximum(tf.squeeze(features[0] @ weights[..., None], -1), 0).numpy()
        top = heat.max()
        return heat / top if top > 0 else heat

    def about(self) -> dict:
        """The model part of an API answer: run folder, checkpoint, model name, classes, input."""
        return {
            "run": self.url,
            "checkpoint": self.checkpoint,
            "name": self.meta.get("model"),
            "target": self.meta.get("target"),
            "classes": self.classes,
            "size": self.size,
            "resize": self.resize,
        }


def load(run_url: str, storage_options: dict | None = None, checkpoint: str = "best.keras") -> Predictor:
    """Load a finished run (a local folder or ``s3://`` prefix) for prediction.

    Raises:
        UserError: RUN has no run.json or no such checkpoint (see ``read_settings``), or the
            checkpoint is damaged (checked before Keras reads it: ``runfolder.check_checkpoint``).
    """
    tensorflow()  # TensorFlow's start-up notices filtered out before Keras imports it
    import keras

    meta = read_settings(run_url, storage_options, checkpoint)
    run = Dataset(run_url, storage_options or {})
    history = run.read_json(HISTORY) if run.exists(HISTORY) else []
    with tempfile.TemporaryDirectory() as tmp:
        path = local_copy(run, checkpoint, Path(tmp))
        check_checkpoint(path, run_url, checkpoint)
        model = keras.models.load_model(path, compile=False)  # scoring needs no optimizer (and no warning about it)
    log.info("loaded %s/%s: %d classes", run_url, checkpoint, len(meta["classes"]))
    return Predictor(run_url, meta, model, checkpoint, history if isinstance(history, list) else [])


def read_image(source: str, timeout: float = 30.0) -> bytes:
    """An image's bytes from a local path or an http(s) URL (``predict``'s arguments; the URL
    through ``fetch.read_url``: one deadline, a byte cap, no redirect off its host).

    Raises:
        UserError: the file or URL cannot be read.
    """
    if source.startswith(("http://", "https://")):
        return fetch.read_url(source, deadline=timeout)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc}") from exc


def predict(
    run_url: str, sources: list[str], storage_options: dict | None = None, top: int = 3, checkpoint: str = "best.keras"
) -> list[dict]:
    """``metdata predict``: each image's (local path or URL) ``ranked`` classes, in order.

    Raises:
        UserError: the run cannot be loaded (see ``load``), or an image cannot be read or decoded.
    """
    predictor = load(run_url, storage_options, checkpoint)
    pixels = np.stack([predictor.prepare(read_image(s)) for s in sources])
    scores = predictor.probabilities(pixels)
    return [{"image": s, **ranked(predictor.classes, p, top)} for s, p in zip(sources, scores, strict=True)]


def overlay(pixels: np.ndarray, heat: np.ndarray, side: int, alpha: float = 0.45) -> np.ndarray:
    """The image enlarged to ``side`` with the Grad-CAM heat map blended over it (jet colours), RGB uint8.

    >>> overlay(np.zeros((8, 8, 3), np.uint8), np.ones((2, 2)), 16).shape
    (16, 16, 3)
    """
    import cv2

    base = enlarge(pixels, side)
    heat8 = np.uint8(255 * np.clip(cv2.resize(heat.astype(np.float32), (side, side)), 0, 1))
    colours = cv2.cvtColor(cv2.applyColorMap(heat8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * base + alpha * colours, 0, 255))


def enlarge(pixels: np.ndarray, side: int) -> np.ndarray:
    """An (S, S, 3) image scaled to ``side`` x ``side`` for display (cubic).

    >>> enlarge(np.zeros((4, 4, 3), np.uint8), 12).shape
    (12, 12, 3)
    """
    import cv2

    return cv2.resize(pixels, (side, side), interpolation=cv2.INTER_CUBIC)


def png(pixels: np.ndarray) -> bytes:
    """An RGB uint8 array as PNG bytes.

    >>> png(np.zeros((2, 2, 3), np.uint8))[:4]
    b'\\x89PNG'
    """
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    if not ok:  # only an empty or malformed array gets here
        raise ValueError(f"cannot encode an array of shape {pixels.shape} as PNG")
    return encoded.tobytes()
