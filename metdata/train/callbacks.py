"""The Keras callbacks of a training run, and their order (``for_run``): history.json, the
schedule (phases, learning rate, early stopping), TensorBoard's scalars, Keras' BackupAndRestore,
the best and last checkpoints, the upload of RUN each epoch.

Every one of them writes through ``metdata.train.runfolder`` and is replayed on resume from what RUN
holds. Importing this module imports Keras (through ``metdata.train.quiet_tf``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from metdata.storage.dataset import Dataset
from metdata.train.models import FINE_TUNE, HEAD, set_stage
from metdata.train.quiet_tf import tensorflow
from metdata.train.runfolder import BACKUP, BEST, HISTORY, LAST, LOGS, RunFolder, checkpoint_note, save_checkpoint
from metdata.train.schedule import Schedule

log = logging.getLogger(__name__)


def _keras():
    tensorflow()  # TensorFlow's start-up notices filtered out before Keras imports it
    import keras

    return keras


def _learning_rate(model) -> float:
    return float(_keras().ops.convert_to_numpy(model.optimizer.learning_rate))


def for_run(
    out: RunFolder, schedule: Schedule, monitor: str, loss: str, fine_tune_layers: int | None, stage, extra=()
) -> list:
    """The run's callbacks, in the order they must run at each epoch end: history.json is written
    before the backup, so it is never behind it; the checkpoints after the backup; the upload last.

    Args:
        out: the run folder.
        schedule: the run's ``Schedule``.
        monitor: the best checkpoint's metric (``val_accuracy``, or ``accuracy`` without validation).
        loss: the loss the plateau watches.
        fine_tune_layers: a two-phase model's fine-tuned layers (None: one phase).
        stage: the stage the model was set to before fit (``set_stage``; None for one phase).
        extra: callbacks of the caller, last.
    """
    history = History(out.scratch)
    return [
        history,
        ApplySchedule(schedule, history, loss, monitor, fine_tune_layers, stage),
        Scalars(out.work / LOGS),
        _keras().callbacks.BackupAndRestore(str(out.work / BACKUP), double_checkpoint=True),
        Checkpoint(out.work / BEST, monitor),
        Checkpoint(out.work / LAST),
        Upload(out),
        *extra,
    ]


class History(_keras().callbacks.Callback):
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


class ApplySchedule(_keras().callbacks.Callback):
    """Applies the run's ``Schedule`` (``metdata.train.schedule``): at each epoch's start the phase
    (the backbone's top layers join the head after the head phase) and the learning rate, at
    its end early stopping; every decision replayed from ``History``'s entries, so a resumed
    run keeps its schedule.

    ``fine_tune_layers`` is None for a model trained in one phase; ``stage`` is the stage the
    model was set to before fit (``set_stage``).
    """

    def __init__(self, schedule: Schedule, history: History, loss: str, metric: str, fine_tune_layers=None, stage=None):
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


class Scalars(_keras().callbacks.Callback):
    """TensorBoard's per-epoch scalars in ``folder`` (train/ and validation/, as Keras' TensorBoard
    callback names them), flushed at each epoch end so the mirror to S3 carries them."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder
        self.writers: dict = {}

    def on_epoch_end(self, epoch, logs=None):
        tf = tensorflow()
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


class Checkpoint(_keras().callbacks.Callback):
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


class Upload(_keras().callbacks.Callback):
    """Upload the backup, history and checkpoints at each epoch end (S3 runs)."""

    def __init__(self, out: RunFolder):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        self.out.upload((HISTORY, BACKUP, BEST, LAST, LOGS))  # history first: never behind the backup
