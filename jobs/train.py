"""The training run: labels and split (``metdata.training``), a model (``metdata.models``)
built and compiled inside a ``tf.distribute`` strategy's scope (``MirroredStrategy`` on one
machine, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers: see
``metdata.distribute``), fit with a backup every epoch so the same command resumes after a
kill, then the run's outputs.

RUN (a local folder or ``s3://`` prefix) ends with::

    model.keras  best.keras  run.json  split.parquet  history.json  curves.png
    backup/      (only while training: Keras' BackupAndRestore state)

On S3 the run works in a local temporary folder, uploads it at each epoch end, and
downloads ``backup/`` (and the history) before resuming. In a multi-worker run only the chief
writes RUN; every worker resumes from the chief's backup there, and each reads only its share
of the training chunks (sharded by ``tf.distribute.InputContext``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from metdata import training
from metdata.dataset import Dataset
from metdata.distribute import Role, multi_worker_fit, role
from metdata.errors import UserError
from metdata.models import MODELS, ModelOptions, UnknownModel, build_model
from metdata.targets import resolve

# this module is the training wiring: importing it starts Keras (only the train commands do)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
HISTORY = "history.json"
BACKUP = "backup"
OUTPUTS = ("model.keras", "best.keras", "run.json", "split.parquet", "history.json", "curves.png")


class RunMismatch(UserError):
    """RUN holds another run; nothing is overwritten."""


@dataclass(frozen=True)
class TrainOptions:
    """One training run's settings (all of them go to run.json and must match to resume).

    Attributes:
        target: built-in target name or a target TOML path.
        out: RUN, a local folder or s3:// prefix.
        model: a name in ``metdata.models.MODELS``.
        epochs: total epochs (a resumed run continues up to it).
        batch_size: per-replica batch; the global batch is this times the replicas.
        val_fraction: share of each class kept for validation.
        seed: weights, augmentation and shuffling seed.
        devices: "all" or how many GPUs (CPU devices when there is no GPU).
        class_weights: weight the loss by balanced class weights.
        store: the Zarr store's name under the data root.
        augment: the model's augmentation layers.
    """

    target: str
    out: str
    model: str = "seed-cnn"
    epochs: int = 100
    batch_size: int = 64
    val_fraction: float = 0.2
    seed: int = 0
    devices: str = "all"
    class_weights: bool = True
    store: str = "images.zarr"
    augment: bool = True


def strategy_for(devices: str = "all", this: Role | None = None):
    """A MirroredStrategy over the visible GPUs, else over the logical CPU devices; with
    several workers in ``TF_CONFIG``, a MultiWorkerMirroredStrategy over each one's devices.

    Raises:
        UserError: more devices asked for than there are; a device count with TF_CONFIG.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if this is not None and this.multi_worker:
        if devices != "all":
            raise UserError(
                f"--devices {devices} with a multi-worker TF_CONFIG: every worker uses all its devices; "
                "limit them with CUDA_VISIBLE_DEVICES instead"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow call

    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    n = len(found) if devices == "all" else int(devices)
    if not 1 <= n <= len(found):
        raise UserError(
            f"--devices {devices}: this machine has {len(found)} {found[0].device_type} device(s); "
            f"give a number from 1 to {len(found)} or 'all'"
        )
    return tf.distribute.MirroredStrategy([d.name for d in found[:n]])


def settings(options: TrainOptions, slots: training.Slots, data: Dataset) -> dict:
    """The run.json content (without the completion fields)."""
    fields = asdict(options)
    fields.pop("out")
    fields.pop("devices")  # the same run may resume on another number of devices
    return {**fields, "data": data.url, "classes": list(slots.classes), "size": slots.size, "resize": slots.resize}


class _Run:
    """RUN and the local folder the run works in (RUN itself when it is local and this
    process writes it; a temporary folder on S3 and for the other workers of a multi-worker run).
    """

    def __init__(self, url: str, storage_options: dict, writer: bool = True):
        self.remote = Dataset(url, storage_options)
        self.writer = writer
        if self.remote.local and writer:
            self.work = Path(self.remote.path(""))
            self._tmp = None
        else:
            self._tmp = tempfile.mkdtemp(prefix="metdata-train-")
            self.work = Path(self._tmp)
        self.work.mkdir(parents=True, exist_ok=True)
        self.scratch = Dataset(str(self.work))  # files of the working folder, written whole

    def read_settings(self) -> dict | None:
        return self.remote.read_json(RUN_FILE) if self.remote.exists(RUN_FILE) else None

    def download_state(self) -> None:
        """Bring back the backup and history of an interrupted run (unless it works in RUN)."""
        if self.remote.local and self.writer:
            return
        for name in (BACKUP, "history.json", "best.keras"):
            if self.remote.exists(name):
                self.remote.fs.get(self.remote.path(name), str(self.work / name), recursive=True)

    def upload(self, names: tuple[str, ...]) -> None:
        if self.remote.local or not self.writer:
            return
        for name in names:
            path = self.work / name
            if path.is_dir():  # file by file: fs.put of a folder nests it when it already exists
                for file in sorted(p for p in path.rglob("*") if p.is_file()):
                    self.remote.write_bytes(f"{name}/{file.relative_to(path).as_posix()}", file.read_bytes())
            elif path.exists():
                self.remote.write_bytes(name, path.read_bytes())

    def remove_remote(self, name: str) -> None:
        if self.writer and not self.remote.local and self.remote.exists(name):
            self.remote.fs.rm(self.remote.path(name), recursive=True)

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def prepare(data: Dataset, options: TrainOptions) -> tuple[training.Slots, np.ndarray]:
    """Labels and split, checked.

    Raises:
        UserError: no store or image, fewer than two classes, a class without training images.
    """
    if options.model not in MODELS:
        raise UnknownModel(f"unknown model {options.model!r}; choose one of: {', '.join(sorted(MODELS))}")
    slots = training.load_slots(data, resolve(options.target), options.store)
    is_val = training.split(slots, options.val_fraction)
    training.check_split(slots.take(~is_val), slots.take(is_val))
    return slots, is_val


def run(data: Dataset, options: TrainOptions, storage_options: dict | None = None, callbacks: list = ()) -> dict:
    """Train (or resume) and write the run's outputs; returns the run.json content.

    A finished run with the same settings is not trained again.

    Raises:
        UserError: bad data (see ``prepare``), or RUN holding a run with other settings.
    """
    slots, is_val = prepare(data, options)
    wanted = settings(options, slots, data)
    this = role()
    storage = storage_options if storage_options is not None else data.storage_options
    out = _Run(options.out, storage, writer=this.chief)
    try:
        existing = out.read_settings()
        if existing is not None:
            diff = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
            if diff:
                raise RunMismatch(
                    f"{options.out} holds another run (run.json differs: "
                    + ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                    + "); nothing was overwritten. Give another --out, or rerun with its settings to resume"
                )
            if existing.get("complete"):
                log.info("%s is already complete; nothing to do", options.out)
                return existing
        out.scratch.write_json(RUN_FILE, {**wanted, "complete": False})
        out.upload((RUN_FILE,))
        _write_split(out, slots, is_val)
        out.download_state()
        summary = _fit(data, options, slots, is_val, out, wanted, list(callbacks), this)
        out.scratch.write_json(RUN_FILE, summary)
        plot_curves(json.loads((out.work / "history.json").read_text()), out.work / "curves.png")
        out.upload(OUTPUTS)
        out.remove_remote(BACKUP)
        return summary
    finally:
        out.close()


def _write_split(out: _Run, slots: training.Slots, is_val: np.ndarray) -> None:
    import pyarrow.parquet as pq

    pq.write_table(training.split_table(slots, is_val), out.work / "split.parquet")
    out.upload(("split.parquet",))


def _fit(data, options, slots, is_val, out: _Run, wanted: dict, extra: list, this: Role) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    chunks = len(training.chunk_plan(slots.take(~is_val)))
    if this.multi_worker and chunks < this.workers:  # checked on every worker: none enters a collective alone
        raise UserError(
            f"the training split spans {chunks} Zarr chunk(s), fewer than the {this.workers} workers of TF_CONFIG: "
            f"run at most {chunks} workers, or rebuild the store with a smaller --chunk"
        )
    strategy = strategy_for(options.devices, this)
    if this.multi_worker:
        check_same_start(strategy, out.work)
    import keras

    keras.utils.set_random_seed(options.seed)
    replicas = strategy.num_replicas_in_sync
    global_batch = options.batch_size * replicas
    train, val = slots.take(~is_val), slots.take(is_val)
    log.info(
        "training %s on %d images, validating on %d; %d replica(s) on %d worker(s), global batch %d",
        options.model,
        len(train),
        len(val),
        replicas,
        this.workers,
        global_batch,
    )
    weights = training.class_weights(train) if options.class_weights else None
    steps = None
    if this.multi_worker:
        # each worker reads its own chunks, without end; every worker runs the same number of steps
        def per_worker(context):
            shard = (context.input_pipeline_id, context.num_input_pipelines)
            batch = context.get_per_replica_batch_size(global_batch)
            read = training.InputOptions(batch, seed=options.seed, weights=weights, repeat=True, shard=shard)
            return training.build_dataset(data, train, read, options.store)

        train_data = strategy.distribute_datasets_from_function(per_worker)
        steps = max(1, -(-len(train) // global_batch))
    else:
        read = training.InputOptions(global_batch, shuffle=True, seed=options.seed, weights=weights)
        train_data = training.build_dataset(data, train, read, options.store)
    val_data = (
        training.build_dataset(data, val, training.InputOptions(global_batch, shuffle=False), options.store)
        if len(val)
        else None
    )
    with strategy.scope():
        model = build_model(
            options.model,
            ModelOptions(slots.size, len(slots.classes), augment=options.augment, seed=options.seed),
        )
    multi_worker_fit(model, strategy)
    monitor = "val_accuracy" if val_data is not None else "accuracy"
    best = keras.callbacks.ModelCheckpoint(
        str(out.work / "best.keras"), monitor=monitor, mode="max", save_best_only=True
    )
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out.work / BACKUP), double_checkpoint=True),
        _History(out.scratch, best, monitor),
        best,
        keras.callbacks.ModelCheckpoint(str(out.work / "model.keras")),
        _Upload(out),
        *extra,
    ]
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=options.epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=2,
    )
    history = json.loads((out.work / "history.json").read_text())
    last = history[-1] if history else {}
    return {
        **wanted,
        "complete": True,
        "replicas": replicas,
        "workers": this.workers,
        "global_batch": global_batch,
        "train_images": len(train),
        "val_images": len(val),
        "epochs_run": len(history),
        "final": last,
        "best_" + monitor: max((h.get(monitor, 0.0) for h in history), default=None),
    }


def check_same_start(strategy, work: Path) -> None:
    """Every worker must resume at the same epoch with the same history, or they would wait on
    each other's collectives for ever: compare them across workers (the same answer everywhere).

    Raises:
        UserError: the workers found different backups (a RUN that is not shared by every
            worker, or a backup read while the chief was writing it).
    """
    import tensorflow as tf

    backup = work / BACKUP / "training_metadata.json"
    epoch = json.loads(backup.read_text())["epoch"] if backup.exists() else -1
    history = work / "history.json"
    entries = len(json.loads(history.read_text())) if history.exists() else 0
    mine = tf.constant([epoch, entries, epoch**2, entries**2], tf.float64)
    total = strategy.reduce("SUM", strategy.run(lambda: tf.identity(mine)), axis=None).numpy()
    n = strategy.num_replicas_in_sync
    mean, square = total[:2] / n, total[2:] / n
    if np.any(square - mean**2 > 1e-9):  # a variance: some worker found another start
        raise UserError(
            "the workers of this run found different backups in RUN (mean epoch "
            f"{mean[0] + 1:.2f}, this worker's {epoch + 1}): RUN must be one folder every worker reads, such as "
            "an s3:// prefix; rerun all the workers together to resume from the chief's last backup"
        )


def _callback_base():
    import keras

    return keras.callbacks.Callback


class _History(_callback_base()):
    """history.json, one entry per epoch, kept across resumes; restores the best checkpoint's best.

    Written whole (``Dataset.write_json``): the other workers of a run read it while the chief writes.
    """

    def __init__(self, folder: Dataset, best, monitor: str):
        super().__init__()
        self.folder, self.best, self.monitor = folder, best, monitor
        self.entries: list[dict] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.entries is None:  # the first epoch of this process: resumed at `epoch`
            old = self.folder.read_json(HISTORY) if self.folder.exists(HISTORY) else []
            self.entries = old[:epoch]
            if epoch:
                log.info("resuming at epoch %d of the run", epoch + 1)
            seen = [h[self.monitor] for h in self.entries if self.monitor in h]
            if seen:
                self.best.best = max(seen)

    def on_epoch_end(self, epoch, logs=None):
        self.entries.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        self.folder.write_json(HISTORY, self.entries)


class _Upload(_callback_base()):
    """Upload the backup, history and checkpoints at each epoch end (S3 runs)."""

    def __init__(self, out: _Run):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        self.out.upload((BACKUP, "history.json", "best.keras", "model.keras"))


def plot_curves(history: list[dict], path: Path) -> None:
    """Accuracy and loss per epoch, training and validation, side by side (the blog's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(epochs, [h.get(metric) for h in history], label=f"training {metric}")
        if any(f"val_{metric}" in h for h in history):
            ax.plot(epochs, [h.get(f"val_{metric}") for h in history], label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _local_copy(run_url: str, storage_options: dict, name: str, into: Path) -> Path:
    remote = Dataset(run_url, storage_options)
    if not remote.exists(name):
        raise UserError(f"{run_url} has no {name}: train a model there first ('metdata train --out {run_url}')")
    if remote.local:
        return Path(remote.path(name))
    target = into / name
    target.write_bytes(remote.read_bytes(name))
    return target


def load_run(run_url: str, storage_options: dict, checkpoint: str = "best.keras"):
    """(model, run.json) of a finished run.

    Raises:
        UserError: RUN has no run.json or no such checkpoint.
    """
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        meta = json.loads(_local_copy(run_url, storage_options, RUN_FILE, Path(tmp)).read_text())
        model = keras.models.load_model(_local_copy(run_url, storage_options, checkpoint, Path(tmp)))
    return model, meta


def evaluate(data: Dataset, run_url: str, side: str = "val", checkpoint: str = "best.keras") -> dict:
    """Accuracy, per-class precision/recall/F1 and a confusion matrix of a run's model.

    Writes ``evaluation-<side>.json`` and ``confusion-<side>.png`` to RUN.
    """
    import pyarrow.parquet as pq

    storage = data.storage_options
    model, meta = load_run(run_url, storage, checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        split = pq.read_table(_local_copy(run_url, storage, "split.parquet", Path(tmp))).to_pylist()
    chosen = {r["slot"] for r in split if side == "all" or r["side"] == side}
    slots = training.load_slots(data, resolve(meta["target"]), meta["store"])
    if tuple(meta["classes"]) != slots.classes:
        raise RunMismatch(f"the store's classes {slots.classes} differ from the run's {meta['classes']}")
    slots = slots.take(np.isin(slots.slot, list(chosen)))
    if not len(slots):
        raise UserError(f"no image on side {side!r} of {run_url}'s split")
    batches = training.build_dataset(data, slots, training.InputOptions(256, shuffle=False), meta["store"])
    truth, guess = [], []
    for x, y in batches:
        truth.append(y.numpy())
        guess.append(model.predict_on_batch(x).argmax(axis=1))
    truth, guess = np.concatenate(truth), np.concatenate(guess)
    k = len(meta["classes"])
    matrix = np.zeros((k, k), int)
    np.add.at(matrix, (truth, guess), 1)
    per_class = {}
    for i, name in enumerate(meta["classes"]):
        tp = matrix[i, i]
        precision = tp / matrix[:, i].sum() if matrix[:, i].sum() else 0.0
        recall = tp / matrix[i].sum() if matrix[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(matrix[i].sum()),
        }
    report = {
        "split": side,
        "checkpoint": checkpoint,
        "images": len(truth),
        "accuracy": float((truth == guess).mean()),
        "classes": meta["classes"],
        "confusion": matrix.tolist(),
        "per_class": per_class,
    }
    remote = Dataset(run_url, storage)
    remote.write_json(f"evaluation-{side}.json", report)
    remote.write_bytes(f"confusion-{side}.png", _confusion_png(matrix, meta["classes"]))
    return report


def _confusion_png(matrix: np.ndarray, classes: list[str]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="black" if n < matrix.max() / 2 else "white")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def read_image(source: str, timeout: float = 30.0) -> bytes:
    """An image's bytes from a local path or an http(s) URL.

    Raises:
        UserError: the file or URL cannot be read.
    """
    if source.startswith(("http://", "https://")):
        import requests

        try:
            response = requests.get(source, timeout=timeout)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise UserError(f"cannot download {source}: {exc}") from exc
        return response.content
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc}") from exc


def prepare_image(data: bytes, size: int, mode: str) -> np.ndarray:
    """Bytes to the uint8 (S, S, 3) array the store would hold: ``imaging.decode`` + ``resize``.

    Raises:
        UserError: undecodable or too large.
    """
    from metdata import imaging

    try:
        rgb, _, _ = imaging.decode(data, size)
    except (imaging.BadImage, imaging.TooLarge) as exc:
        raise UserError(f"not a usable image: {exc}") from exc
    return imaging.resize(rgb, size, mode)


def predict(run_url: str, sources: list[str], storage_options: dict, top: int = 3, checkpoint="best.keras") -> list:
    """Each image's top classes with probabilities, best first."""
    model, meta = load_run(run_url, storage_options, checkpoint)
    pixels = np.stack([prepare_image(read_image(s), meta["size"], meta["resize"]) for s in sources])
    probabilities = model.predict_on_batch(pixels)
    results = []
    for source, p in zip(sources, probabilities, strict=True):
        order = np.argsort(-p)[:top]
        results.append(
            {
                "image": source,
                "top": [{"class": meta["classes"][i], "probability": float(p[i])} for i in order],
                "probabilities": {c: float(v) for c, v in zip(meta["classes"], p, strict=True)},
            }
        )
    return results
