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
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from metdata import explore, training
from metdata.dataset import Dataset
from metdata.distribute import Role, multi_worker_fit, role
from metdata.errors import UserError
from metdata.models import (
    BACKBONES,
    FINE_TUNE,
    HEAD,
    MODELS,
    PRECISIONS,
    ModelOptions,
    UnknownModel,
    build_model,
    set_stage,
    supports_jit,
)
from metdata.runfolder import (
    BACKUP,
    BEST,
    CURVES,
    HISTORY,
    LAST,
    LOGS,
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
from metdata.schedule import Schedule
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
        learning_rate: Adam's rate (of the head phase, for a pretrained backbone).
        weights: a backbone's initial weights: "imagenet", a weights file, or "none" (None: imagenet
            for a backbone, none for seed-cnn).
        head_epochs: epochs of training the head alone before fine-tuning a pretrained backbone
            (None: 5 with pretrained weights, else 0).
        fine_tune_layers: the backbone's top layers trained after the head phase (BatchNormalization excepted).
        fine_tune_lr: Adam's rate after the head phase.
        precision: "auto" (float32 on CPU; mixed_bfloat16 on GPUs that compute it natively, else
            mixed_float16), or one of ``metdata.models.PRECISIONS``.
        jit: XLA compilation of the train step (None: on a single GPU replica when the model allows).
        steps_per_execution: batches per compiled call (None: 16 on GPUs, 1 on CPU).
        lr_schedule: "constant", or "plateau" (cut the rate x0.2 after lr_patience epochs without a lower loss).
        lr_patience: the plateau's patience in epochs.
        early_stopping: stop after this many epochs without a better checkpoint metric (0: never).
        cache_mb: keep decoded chunks in memory up to this many MB, shared by the training and
            validation input by their images (0: none; a resumed run may change it).
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
    learning_rate: float = 1e-3
    weights: str | None = None
    head_epochs: int | None = None
    fine_tune_layers: int = 20
    fine_tune_lr: float = 1e-5
    precision: str = "auto"
    jit: bool | None = None
    steps_per_execution: int | None = None
    lr_schedule: str = "constant"
    lr_patience: int = 3
    early_stopping: int = 0
    cache_mb: float = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_patience", "steps_per_execution"):
            _check_whole(name, getattr(self, name), 1, optional=name == "steps_per_execution")
        for name in ("head_epochs", "fine_tune_layers", "early_stopping"):
            _check_whole(name, getattr(self, name), 0, optional=name == "head_epochs")
        training.check_val_fraction(self.val_fraction)
        mb = self.cache_mb
        if isinstance(mb, bool) or not isinstance(mb, int | float) or not 0 <= mb < math.inf:
            raise UserError(f"cache_mb {self.cache_mb!r}: give the MB of decoded images to keep in memory, 0 for none")
        for name in ("learning_rate", "fine_tune_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise UserError(f"{name} {value!r}: give a positive learning rate, e.g. 1e-3")
        if self.precision not in ("auto", *PRECISIONS):
            raise UserError(f"precision {self.precision!r}: choose auto or one of {', '.join(PRECISIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"lr_schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        if self.jit and not supports_jit(self.model, self.augment):
            raise UserError(
                "--jit: XLA cannot compile Keras' random image layers (the augmentation); add --no-augment, "
                "or leave --jit out"
            )
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights.strip()):
            raise UserError(f"weights {self.weights!r}: give imagenet, none or the path of a weights file")
        if self.model in MODELS and self.model not in BACKBONES and self.weights not in (None, "none"):
            raise UserError(f"--weights {self.weights}: {self.model} has no pretrained weights; leave --weights out")
        if self.head_epochs and not (self.model in BACKBONES and self.weights != "none"):
            raise UserError(
                f"--head-epochs {self.head_epochs}: the head-first phase needs a backbone with pretrained weights "
                f"(--model {' or '.join(BACKBONES)} --weights imagenet or PATH); {self.model} with weights "
                f"{self.weights or 'none'} trains every layer from the first epoch"
            )

    def resolved(self, gpus: int = 0, bf16: bool = False) -> TrainOptions:
        """These options with the defaults that depend on the model and the machine decided
        (what run.json records): weights, head_epochs, precision.

        >>> TrainOptions("t", "o", model="efficientnetv2-b0").resolved().weights
        'imagenet'
        >>> TrainOptions("t", "o").resolved(gpus=1, bf16=True).precision
        'mixed_bfloat16'
        """
        weights = self.weights or ("imagenet" if self.model in BACKBONES else "none")
        pretrained = self.model in BACKBONES and weights != "none"
        head = self.head_epochs if self.head_epochs is not None else (5 if pretrained else 0)
        precision = self.precision
        if precision == "auto":
            precision = "float32" if not gpus else ("mixed_bfloat16" if bf16 else "mixed_float16")
        return replace(self, weights=weights, head_epochs=head, precision=precision)

    @property
    def pretrained(self) -> bool:
        """A backbone starting from pretrained weights (trained in two phases)."""
        return self.model in BACKBONES and self.weights not in (None, "none")

    def schedule(self) -> Schedule:
        """The run's schedule (phases, learning rates, early stopping) of resolved options."""
        return Schedule(
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            head_epochs=self.head_epochs if self.pretrained else 0,
            fine_tune_lr=self.fine_tune_lr,
            plateau=self.lr_patience if self.lr_schedule == "plateau" else 0,
            early_stopping=self.early_stopping,
        )


LR_SCHEDULES = ("constant", "plateau")


def _check_whole(name: str, value, least: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserError(f"{name} {value!r}: give a whole number of at least {least}")


def accelerators() -> tuple[int, bool]:
    """How many GPUs this machine has, and whether all of them compute bfloat16 natively
    (compute capability 8.0 or more: Ampere and later). Lists the devices without starting them."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus]
    return len(gpus), bool(gpus) and all(tuple(c) >= (8, 0) for c in capabilities)


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
    options = options.resolved(*accelerators())
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
    cache = options.cache_mb * len(train) / len(slots)  # the training input's share of --cache-mb
    val_cache = options.cache_mb - cache
    steps = None
    if this.multi_worker:
        # each worker reads its own chunks, without end; every worker runs the same number of steps
        def per_worker(context):
            shard = (context.input_pipeline_id, context.num_input_pipelines)
            batch = context.get_per_replica_batch_size(global_batch)
            read = training.InputOptions(
                batch, seed=options.seed, weights=weights, repeat=True, shard=shard, cache_mb=cache
            )
            return training.build_dataset(data, train, read, options.store)

        train_data = strategy.distribute_datasets_from_function(per_worker)
        steps = max(1, -(-len(train) // global_batch))
    else:
        read = training.InputOptions(global_batch, shuffle=True, seed=options.seed, weights=weights, cache_mb=cache)
        train_data = training.build_dataset(data, train, read, options.store)
    val_data = (
        training.build_dataset(data, val, training.InputOptions(global_batch, False, cache_mb=val_cache), options.store)
        if len(val)
        else None
    )
    check_resume(out.work)
    done = backup_epochs(out.work)
    gpus, _ = accelerators()
    jit = options.jit
    if jit is None:  # XLA: slower than TensorFlow's own kernels on CPU, and it fails across CPU replicas
        jit = bool(gpus) and replicas == 1 and supports_jit(options.model, options.augment)
    elif jit and replicas > 1 and not gpus:
        raise UserError(
            f"--jit with {replicas} CPU replicas: XLA cannot run one model across CPU devices (TensorFlow's "
            "'variable on a different device'); give --devices 1 or --no-jit"
        )
    steps_per_execution = options.steps_per_execution or (16 if gpus else 1)
    built = ModelOptions(
        slots.size,
        len(slots.classes),
        augment=options.augment,
        learning_rate=options.learning_rate,
        seed=options.seed,
        weights="none" if done else options.weights,  # a backup holds every weight: no download, no file
        precision=options.precision,
        jit=jit,
        steps_per_execution=steps_per_execution,
    )
    with strategy.scope():
        model = build_model(options.model, built)
        if options.pretrained:
            # the optimizer knows every variable either phase trains, so a backup of either phase loads whole
            set_stage(model, FINE_TUNE, options.fine_tune_layers)
            model.optimizer.build(model.trainable_variables)
    multi_worker_fit(model, strategy)
    schedule = options.schedule()
    stage = None
    if options.pretrained:
        stage = HEAD if schedule.phase(done) == "head" else FINE_TUNE
        set_stage(model, stage, options.fine_tune_layers)
    monitor = "val_accuracy" if val_data is not None else "accuracy"
    loss = "val_loss" if val_data is not None else "loss"
    earlier = out.scratch.read_json(HISTORY)[:done] if done and out.scratch.exists(HISTORY) else []
    stopped = schedule.stop_epoch([h.get(monitor, -math.inf) for h in earlier])
    if stopped is not None:  # early stopping ended the run before a kill: finish it without another epoch
        out.scratch.write_json(HISTORY, earlier)
    best = _Checkpoint(out.work / BEST, monitor)
    history = _History(out.scratch)
    log.info("TensorBoard: tensorboard --logdir %s", out.work / LOGS)
    callbacks = [  # in this order: history.json is written before the backup, so it is never behind it
        history,
        _Schedule(schedule, history, loss, monitor, options.fine_tune_layers if stage else None, stage),
        _Scalars(out.work / LOGS),
        keras.callbacks.BackupAndRestore(str(out.work / BACKUP), double_checkpoint=True),
        best,
        _Checkpoint(out.work / LAST),
        _Upload(out),
        *extra,
    ]
    with training.reading_chunks():  # a damaged chunk: named, with the fix, not TensorFlow's traceback
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=options.epochs if stopped is None else done,  # a run early stopping ended runs no more
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=2,
        )
    entries = out.scratch.read_json(HISTORY)
    last = entries[-1] if entries else {}
    best_note = finish_checkpoints(model, out.work, last, monitor)
    return {
        **wanted,
        "complete": True,
        "replicas": replicas,
        "workers": this.workers,
        "global_batch": global_batch,
        "train_images": len(train),
        "val_images": len(val),
        "epochs_run": len(entries),
        "stopped_early": len(entries) < options.epochs,
        "jit_compile": bool(model.jit_compile),
        "steps_per_execution_used": steps_per_execution,
        "final": last,
        "best_" + monitor: best_note.get(monitor),
        "best_epoch": best_note.get("epoch"),
    }


def backup_epochs(work: Path) -> int:
    """How many epochs RUN's backup holds (0: no whole backup to resume from)."""
    metadata = work / BACKUP / "training_metadata.json"
    if not (metadata.exists() and (work / BACKUP / "latest.weights.h5").exists()):
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


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


def _learning_rate(model) -> float:
    import keras

    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


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
        entry = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        entry.setdefault("learning_rate", _learning_rate(self.model))
        self.entries.append(entry)
        self.folder.write_json(HISTORY, self.entries)


class _Schedule(_callback_base()):
    """Applies the run's ``Schedule`` (``metdata.schedule``): at each epoch's start the phase
    (the backbone's top layers join the head after the head phase) and the learning rate, at
    its end early stopping; every decision replayed from ``_History``'s entries, so a resumed
    run keeps its schedule.

    ``fine_tune_layers`` is None for a model trained in one phase; ``stage`` is the stage the
    model was set to before fit (``set_stage``).
    """

    def __init__(
        self, schedule: Schedule, history: _History, loss: str, metric: str, fine_tune_layers=None, stage=None
    ):
        super().__init__()
        self.schedule, self.history, self.fine_tune_layers = schedule, history, fine_tune_layers
        self.loss, self.metric = loss, metric
        self.stage = stage

    def on_epoch_begin(self, epoch, logs=None):
        if self.fine_tune_layers is not None:
            stage = HEAD if self.schedule.phase(epoch) == "head" else FINE_TUNE
            if stage != self.stage:  # fit traced the train step with the trainable layers of the other stage
                set_stage(self.model, stage, self.fine_tune_layers)
                self.model.make_train_function(force=True)
                self.stage = stage
                log.info("epoch %d: training %s", epoch + 1, stage)
        losses = [h.get(self.loss, math.inf) for h in self.history.entries]
        self.model.optimizer.learning_rate = self.schedule.learning_rate_at(epoch, losses)

    def on_epoch_end(self, epoch, logs=None):
        if self.schedule.stops_after([h.get(self.metric, -math.inf) for h in self.history.entries]):
            log.info(
                "early stopping after epoch %d: %s has not improved for %d epochs",
                epoch + 1,
                self.metric,
                self.schedule.early_stopping,
            )
            self.model.stop_training = True


class _Scalars(_callback_base()):
    """TensorBoard's per-epoch scalars in ``folder`` (train/ and validation/, as Keras' TensorBoard
    callback names them), flushed at each epoch end so the mirror to S3 carries them."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder
        self.writers: dict = {}

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        # tf.summary.scalar lives in the tensorboard package: write what it writes with TensorFlow's own
        # op, so training needs no TensorBoard (only viewing the logs does)
        scalar = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        logs = dict(logs or {})
        logs.setdefault("learning_rate", _learning_rate(self.model))
        for key, value in logs.items():
            side, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            if side not in self.writers:
                self.writers[side] = tf.summary.create_file_writer(str(self.folder / side))
            with self.writers[side].as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch, metadata=scalar)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


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
        self.out.upload((HISTORY, BACKUP, BEST, LAST, LOGS))  # history first: never behind the backup
