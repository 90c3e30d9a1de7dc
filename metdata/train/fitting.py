"""The parts of a training run's fit: its input (``inputs``), its model built in the strategy's
scope (``build``), the Keras ``fit`` call (``fit``), and the facts run.json records (``summary``).

``jobs/train.py`` wires them in order; the callbacks are ``metdata.train.callbacks``'. TensorFlow is
imported through ``metdata.train.quiet_tf`` by the functions that need it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from metdata.storage.imagestore import ImageStore
from metdata.train import stream, training
from metdata.train.distribute import Role, multi_worker_fit
from metdata.train.models import FINE_TUNE, HEAD, ModelOptions, build_model, set_stage
from metdata.train.quiet_tf import tensorflow
from metdata.train.runfolder import BACKUP, HISTORY, RunFolder
from metdata.train.schedule import Schedule
from metdata.train.trainoptions import TrainOptions


@dataclass(frozen=True)
class Inputs:
    """A run's input: the training and validation datasets, and the steps of a training epoch
    (None: the training dataset's own length)."""

    train: object
    val: object | None
    steps: int | None


def backup_epochs(work: Path) -> int:
    """How many epochs RUN's backup holds (0: no whole backup to resume from)."""
    metadata = work / BACKUP / "training_metadata.json"
    if not (metadata.exists() and (work / BACKUP / "latest.weights.h5").exists()):
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


def inputs(
    store: ImageStore, options: TrainOptions, split: training.Split, strategy, this: Role, done: int = 0
) -> Inputs:
    """The ``tf.data`` input of a run (``metdata.train.stream``): on one machine, the training slots in
    global batches, shuffled per epoch; in a multi-worker run, each worker's own chunks without
    end and a count of steps that is the same on every worker. Validation in global batches, in
    the store's order. ``--cache-mb`` is shared by the two sides by their images. A run resumed
    after ``done`` epochs shuffles its next epoch as the run would have without the stop.

    A finite dataset is given its number of batches (``assert_cardinality``). Without it Keras
    cannot know a ``from_generator`` dataset's length, so it asks for one step past the last batch
    each epoch ("Your input ran out of data; interrupting training"), and under ``tf.distribute``
    that step runs on an empty batch: no weight changes, but the optimizer's step count and the
    augmentation's seeds advance once more per epoch than there are batches.
    """
    train, val = split.train, split.val
    global_batch = options.batch_size * strategy.num_replicas_in_sync
    weights = training.class_weights(train) if options.class_weights else None
    cache = options.cache_mb * len(train) / len(split.slots)  # the training input's share of --cache-mb
    steps = None
    if this.multi_worker:

        def per_worker(context):
            shard = (context.input_pipeline_id, context.num_input_pipelines)
            batch = context.get_per_replica_batch_size(global_batch)
            read = stream.InputOptions(
                batch, seed=options.seed, weights=weights, repeat=True, shard=shard, cache_mb=cache, first_epoch=done
            )
            return stream.build_dataset(store, train, read)

        train_data = strategy.distribute_datasets_from_function(per_worker)
        steps = max(1, -(-len(train) // global_batch))
    else:
        read = stream.InputOptions(
            global_batch, shuffle=True, seed=options.seed, weights=weights, cache_mb=cache, first_epoch=done
        )
        train_data = _counted(stream.build_dataset(store, train, read), len(train), global_batch)
    val_data = None
    if len(val):
        read = stream.InputOptions(global_batch, False, cache_mb=options.cache_mb - cache)
        val_data = _counted(stream.build_dataset(store, val, read), len(val), global_batch)
    return Inputs(train_data, val_data, steps)


def _counted(dataset, images: int, batch: int):
    """``dataset`` (whole batches of ``batch`` over ``images`` images, the last one smaller) with its length known."""
    tf = tensorflow()
    return dataset.apply(tf.data.experimental.assert_cardinality(-(-images // batch)))


def build(options: TrainOptions, slots: training.Slots, strategy, gpus: int, done: int):
    """The run's compiled model, built inside ``strategy.scope()`` and set to the stage of epoch
    ``done`` (a resumed run); returns (model, its stage or None for a one-phase model).

    Raises:
        UserError: options the machine cannot run (``TrainOptions.compilation``), weights that do
            not load (``metdata.train.models``).
    """
    jit, steps_per_execution = options.compilation(gpus, strategy.num_replicas_in_sync)
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
    stage = None
    if options.pretrained:
        stage = HEAD if options.schedule().phase(done) == "head" else FINE_TUNE
        set_stage(model, stage, options.fine_tune_layers)
    return model, stage


def monitored(data: Inputs) -> tuple[str, str]:
    """(the best checkpoint's metric, the loss the plateau watches): validation's when there is a validation side."""
    return ("val_accuracy", "val_loss") if data.val is not None else ("accuracy", "loss")


def stopped_before(out: RunFolder, schedule: Schedule, done: int, monitor: str) -> int | None:
    """The epoch early stopping ended this run at before a kill (None: it did not), with
    history.json cut back to the backup's ``done`` epochs in that case: the run then finishes
    without another epoch."""
    earlier = out.scratch.read_json(HISTORY)[:done] if done and out.scratch.exists(HISTORY) else []
    stopped = schedule.stop_epoch([h.get(monitor, -math.inf) for h in earlier])
    if stopped is not None:
        out.scratch.write_json(HISTORY, earlier)
    return stopped


def fit(model, data: Inputs, epochs: int, callbacks: list) -> None:
    """``model.fit`` on the run's input; a damaged chunk is named (``reading_chunks``), not
    TensorFlow's traceback. The input is shuffled by ``metdata.train.stream`` itself: Keras' own
    ``shuffle`` does not apply to a ``tf.data`` input (and warns when asked to)."""
    with stream.reading_chunks():
        model.fit(
            data.train,
            validation_data=data.val,
            epochs=epochs,
            steps_per_epoch=data.steps,
            callbacks=callbacks,
            shuffle=False,
            verbose=2,
        )


def summary(wanted: dict, facts: dict, model, entries: list, best_note: dict, monitor: str, epochs: int) -> dict:
    """run.json of a finished run of ``epochs`` epochs: its settings, ``facts`` (replicas, images, ...),
    the epochs run (``entries`` of history.json), how the model ran, the last epoch's metrics and the
    best checkpoint's (``best_note``)."""
    last = entries[-1] if entries else {}
    return {
        **wanted,
        "complete": True,
        **facts,
        "epochs_run": len(entries),
        "stopped_early": len(entries) < epochs,
        "jit_compile": bool(model.jit_compile),
        "steps_per_execution_used": model.steps_per_execution,
        "final": last,
        "best_" + monitor: best_note.get(monitor),
        "best_epoch": best_note.get("epoch"),
    }
