"""The training run: labels and split (``metdata.training``), a model (``metdata.models``)
built and compiled inside a ``tf.distribute`` strategy's scope (``MirroredStrategy`` on one
machine, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers: see
``metdata.distribute``), fit with a backup every epoch so the same command resumes after a
kill, then the run's outputs.

What RUN holds, its settings and resume rules, its checkpoints (saved whole, verified) and the
local folder mirrored to S3 are ``metdata.runfolder``'s; the curves are drawn by
``metdata.explore``; ``evaluate`` and ``predict`` are ``metdata.evaluation`` and
``metdata.prediction``. In a multi-worker run only the chief writes RUN; every worker resumes
from the chief's backup there, and each reads only its share of the training chunks (sharded
by ``tf.distribute.InputContext``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metdata import explore, training
from metdata.dataset import Dataset
from metdata.distribute import Role, multi_worker_fit, role
from metdata.errors import UserError
from metdata.models import MODELS, ModelOptions, UnknownModel, build_model
from metdata.runfolder import (
    BACKUP,
    BEST,
    CURVES,
    HISTORY,
    LAST,
    OUTPUTS,
    RUN_FILE,
    SPLIT,
    RunFolder,
    check_finished,
    check_resume,
    check_settings,
    checkpoint_note,
    finish_checkpoints,
    save_checkpoint,
    settings,
)
from metdata.targets import resolve

# this module is the training wiring: importing it starts Keras (only the train commands do)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger(__name__)


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

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} {value!r}: give a whole number of at least 1")
        training.check_val_fraction(self.val_fraction)


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
    out = RunFolder(options.out, storage, writer=this.chief)
    try:
        existing = out.read_settings()
        if existing is not None:
            check_settings(existing, wanted, options.out)
            if existing.get("complete"):
                check_finished(options.out, storage)
                log.info("%s is already complete; nothing to do", options.out)
                return existing
        out.scratch.write_json(RUN_FILE, {**wanted, "complete": False})
        out.upload((RUN_FILE,))
        out.scratch.write_table(SPLIT, training.split_table(slots, is_val))
        out.upload((SPLIT,))
        out.download_state()
        summary = _fit(data, options, slots, is_val, out, wanted, list(callbacks), this)
        out.scratch.write_json(RUN_FILE, summary)
        out.scratch.write_bytes(CURVES, explore.png_bytes(explore.draw_curves(out.scratch.read_json(HISTORY))))
        out.upload(OUTPUTS)
        out.remove_remote(BACKUP)
        return summary
    finally:
        out.close()


def _fit(data, options, slots, is_val, out: RunFolder, wanted: dict, extra: list, this: Role) -> dict:
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
    check_resume(out.work)
    best = _Checkpoint(out.work / BEST, monitor)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out.work / BACKUP), double_checkpoint=True),
        _History(out.scratch),
        best,
        _Checkpoint(out.work / LAST),
        _Upload(out),
        *extra,
    ]
    with training.reading_chunks():  # a damaged chunk: named, with the fix, not TensorFlow's traceback
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=options.epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=2,
        )
    history = out.scratch.read_json(HISTORY)
    last = history[-1] if history else {}
    best_note = finish_checkpoints(model, out.work, last, monitor)
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
        "best_" + monitor: best_note.get(monitor),
        "best_epoch": best_note.get("epoch"),
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
    history = work / HISTORY
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
    """history.json, one entry per epoch, kept across resumes.

    Written whole (``Dataset.write_json``): the other workers of a run read it while the chief writes.
    """

    def __init__(self, folder: Dataset):
        super().__init__()
        self.folder = folder
        self.entries: list[dict] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.entries is None:  # the first epoch of this process: resumed at `epoch`
            old = self.folder.read_json(HISTORY) if self.folder.exists(HISTORY) else []
            self.entries = old[:epoch]
            if epoch:
                log.info("resuming at epoch %d of the run", epoch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.entries.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        self.folder.write_json(HISTORY, self.entries)


class _Checkpoint(_callback_base()):
    """A checkpoint saved whole at each epoch end (``save_checkpoint``), or, with ``monitor``, only
    when that metric beats the checkpoint's own note (the best so far, kept across resumes)."""

    def __init__(self, path: Path, monitor: str | None = None):
        super().__init__()
        self.path, self.monitor = path, monitor
        self.held: dict | None = None  # the note of the checkpoint on disk (read once: check_resume checked it)

    def on_epoch_end(self, epoch, logs=None):
        note = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        if self.monitor is not None and self.monitor in note:
            if self.held is None:
                self.held = checkpoint_note(self.path) or {}
            if self.monitor in self.held and not note[self.monitor] > self.held[self.monitor]:
                return
        save_checkpoint(self.model, self.path, note)
        self.held = note


class _Upload(_callback_base()):
    """Upload the backup, history and checkpoints at each epoch end (S3 runs)."""

    def __init__(self, out: RunFolder):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        self.out.upload((BACKUP, HISTORY, BEST, LAST))
