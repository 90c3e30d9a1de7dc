"""The training run: labels and split (``metdata.train.training``), a model (``metdata.train.models``)
built and compiled inside a ``tf.distribute`` strategy's scope (``MirroredStrategy`` on one
machine, ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers: see
``metdata.train.distribute``), fit with a backup every epoch so the same command resumes after a
kill, then the run's outputs.

Wiring only: the options are ``metdata.train.trainoptions``', the input, model and fit call
``metdata.train.fitting``'s, the callbacks ``metdata.train.callbacks``'. What RUN holds, its settings and
resume rules, its checkpoints (saved whole, verified) and the local folder mirrored to S3 are
``metdata.train.runfolder``'s; the curves are drawn by ``metdata.core.figures``; ``evaluate`` and
``predict`` are ``metdata.predict.evaluation`` and ``metdata.predict.prediction``. In a multi-worker run only
the chief writes RUN; every worker resumes from the chief's backup there, and each reads only
its share of the training chunks (sharded by ``tf.distribute.InputContext``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from metdata.core import figures
from metdata.core.targets import resolve
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.train import fitting, stream, training
from metdata.train.distribute import Role, accelerators, check_same_start, check_shards, role, strategy_for
from metdata.train.models import MODELS, UnknownModel
from metdata.train.runfolder import (
    BACKUP,
    CURVES,
    HISTORY,
    LOGS,
    OUTPUTS,
    RUN_FILE,
    RunFolder,
    check_finished,
    check_resume,
    check_settings,
    finish_checkpoints,
    settings,
)
from metdata.train.trainoptions import TrainOptions

log = logging.getLogger(__name__)


def prepare(data: Dataset, options: TrainOptions) -> training.RunData:
    """The run's data (the store opened once, labels and split), checked.

    Raises:
        UserError: no store or image, fewer than two classes, a class without training images.
    """
    if options.model not in MODELS:
        raise UnknownModel(f"unknown model {options.model!r}; choose one of: {', '.join(sorted(MODELS))}")
    return training.prepare(data, options.store, resolve(options.target), options.val_fraction)


def run(data: Dataset, options: TrainOptions, storage_options: dict | None = None, callbacks: list = ()) -> dict:
    """Train (or resume) and write the run's outputs; returns the run.json content.

    A finished run with the same settings is not trained again.

    Raises:
        UserError: bad data (see ``prepare``), or RUN holding a run with other settings.
    """
    gpus, bf16 = accelerators()  # the machine's devices, listed once
    options = options.resolved(gpus, bf16)
    run_data = prepare(data, options)  # the store opened once: every read of the run goes through it
    wanted = settings(options, run_data)
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
        out.start(wanted, run_data.split.table())
        out.download_state()
        summary = _fit(Fit(run_data.store, options, run_data.split, out, wanted, this, gpus), list(callbacks))
        out.scratch.write_json(RUN_FILE, summary)
        out.scratch.write_bytes(CURVES, figures.png_bytes(figures.draw_curves(out.scratch.read_json(HISTORY))))
        out.upload(OUTPUTS)
        out.remove_remote(BACKUP)
        return summary
    finally:
        out.close()


@dataclass(frozen=True)
class Fit:
    """What a run's fit is given: the store (opened once), the settings, the split, RUN and the machine."""

    store: ImageStore
    options: TrainOptions
    split: training.Split
    out: RunFolder
    wanted: dict
    this: Role
    gpus: int


def _fit(job: Fit, extra: list) -> dict:
    options, split, out, this = job.options, job.split, job.out, job.this
    check_shards(len(stream.chunk_plan(split.train)), this)
    strategy = strategy_for(options.devices, this)
    if this.multi_worker:
        check_same_start(strategy, out.work)
    import keras  # TensorFlow is already imported, without its start-up notices (metdata.train.quiet_tf)

    from metdata.train import callbacks

    keras.utils.set_random_seed(options.seed)
    replicas = strategy.num_replicas_in_sync
    global_batch = options.batch_size * replicas
    train, val = split.train, split.val
    log.info(
        "training %s on %d images, validating on %d; %d replica(s) on %d worker(s), global batch %d",
        options.model,
        len(train),
        len(val),
        replicas,
        this.workers,
        global_batch,
    )
    check_resume(out.work)
    done = fitting.backup_epochs(out.work)
    data_in = fitting.inputs(job.store, options, split, strategy, this, done)
    model, stage = fitting.build(options, split.slots, strategy, job.gpus, done)
    schedule = options.schedule()
    monitor, loss = fitting.monitored(data_in)
    stopped = fitting.stopped_before(out, schedule, done, monitor)
    log.info("TensorBoard: tensorboard --logdir %s", out.work / LOGS)
    tuning = options.fine_tune_layers if stage else None
    fitting.fit(
        model,
        data_in,
        options.epochs if stopped is None else done,  # a run early stopping ended runs no more
        callbacks.for_run(out, schedule, monitor, loss, tuning, stage, extra),
    )
    entries = out.scratch.read_json(HISTORY)
    best_note = finish_checkpoints(model, out.work, entries[-1] if entries else {}, monitor)
    facts = {
        "replicas": replicas,
        "workers": this.workers,
        "global_batch": global_batch,
        "train_images": len(train),
        "val_images": len(val),
    }
    return fitting.summary(job.wanted, facts, model, entries, best_note, monitor, options.epochs)
