"""``metdata train``, ``evaluate`` and ``predict``: a classifier from the image store, and its use.

TensorFlow is imported only when one of these commands runs.
"""

from __future__ import annotations

import json

import click

from metdata.cli.options import (
    FiniteFloat,
    StoreName,
    checkpoint_option,
    data_option,
    fail_cleanly,
    storage_option,
    store_option,
)


class Devices(click.ParamType):
    """``all`` or a positive number of devices."""

    name = "N|all"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text == "all" or (text.isdigit() and int(text) >= 1):
            return text
        self.fail(f"{value!r}: give a number of devices (1, 2, ...) or 'all'", param, ctx)


@click.command()
@data_option
@click.option("--target", required=True, help="The target the store was built for, e.g. painting-culture.")
@click.option("--out", "out", required=True, metavar="RUN", help="Run folder: local or s3://bucket/prefix.")
@click.option("--model", default="seed-cnn", show_default=True, help="A model of metdata.train.models.MODELS.")
@click.option("--epochs", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Per device; global = x devices."
)
@click.option("--val-fraction", type=FiniteFloat(0, 1, max_open=True), default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Weights, augmentation and shuffling.")
@click.option("--devices", type=Devices(), default="all", show_default=True, help="GPUs (CPUs without GPU).")
@click.option("--class-weights/--no-class-weights", default=True, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random zoom/shift/flip/rotation.")
@click.option("--learning-rate", type=FiniteFloat(0, min_open=True), default=1e-3, show_default=True)
@click.option(
    "--weights",
    default=None,
    metavar="imagenet|PATH|none",
    help="A backbone's initial weights: ImageNet (downloaded by Keras), a .weights.h5 file of the bare "
    "backbone (air-gapped), or none (from scratch)  [default: imagenet for a backbone, none for seed-cnn]",
)
@click.option(
    "--head-epochs",
    type=click.IntRange(0),
    default=None,
    help="Pretrained backbone: epochs training the head alone (backbone frozen) before fine-tuning  [default: 5]",
)
@click.option(
    "--fine-tune-layers",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Pretrained backbone: its top layers trained after the head epochs (BatchNormalization stays frozen).",
)
@click.option("--fine-tune-lr", type=FiniteFloat(0, min_open=True), default=1e-5, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "mixed_bfloat16", "mixed_float16"]),
    default="auto",
    show_default=True,
    help="Keras mixed precision; auto: float32 on CPU, mixed_bfloat16 on Ampere+ GPUs, else mixed_float16.",
)
@click.option(
    "--jit/--no-jit", default=None, help="XLA compilation  [default: on for one GPU replica without augmentation]"
)
@click.option(
    "--steps-per-execution",
    type=click.IntRange(1),
    default=None,
    help="Batches per compiled call  [default: 16 on GPU, 1 on CPU]",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "plateau"]),
    default="constant",
    show_default=True,
    help="plateau: the rate x0.2 after --lr-patience epochs without a lower (validation) loss.",
)
@click.option("--lr-patience", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--early-stopping",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    metavar="EPOCHS",
    help="Stop after this many epochs without a better validation accuracy (0: never); best.keras keeps the best.",
)
@click.option(
    "--cache-mb",
    type=FiniteFloat(0),
    default=0,
    show_default=True,
    metavar="MB",
    help="Keep decoded images in memory up to this many MB (for datasets that fit): later epochs skip decoding.",
)
@store_option
@storage_option
def train(
    data,
    target,
    out,
    model,
    epochs,
    batch_size,
    val_fraction,
    seed,
    devices,
    class_weights,
    augment,
    learning_rate,
    weights,
    head_epochs,
    fine_tune_layers,
    fine_tune_lr,
    precision,
    jit,
    steps_per_execution,
    lr_schedule,
    lr_patience,
    early_stopping,
    cache_mb,
    store,
    storage_options,
) -> None:
    """Train a classifier on the store's images; rerun the same command to resume after a stop.

    Writes to RUN: model.keras (last), best.keras (best validation accuracy), run.json,
    split.parquet, history.json, curves.png, logs/ (TensorBoard: tensorboard --logdir RUN/logs).
    """
    from metdata.jobs.train import run
    from metdata.storage.dataset import Dataset
    from metdata.train.trainoptions import TrainOptions

    options = fail_cleanly(  # options that do not fit together (e.g. --weights with seed-cnn): a message, exit 1
        TrainOptions,
        target=target,
        out=out,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        val_fraction=val_fraction,
        seed=seed,
        devices=devices,
        class_weights=class_weights,
        store=store,
        augment=augment,
        learning_rate=learning_rate,
        weights=weights,
        head_epochs=head_epochs,
        fine_tune_layers=fine_tune_layers,
        fine_tune_lr=fine_tune_lr,
        precision=precision,
        jit=jit,
        steps_per_execution=steps_per_execution,
        lr_schedule=lr_schedule,
        lr_patience=lr_patience,
        early_stopping=early_stopping,
        cache_mb=cache_mb,
    )
    dataset = Dataset(data, storage_options)

    def go():
        dataset.check_output(out, "--out", storage_options)  # RUN never overwrites the root's own folders
        return run(dataset, options)

    click.echo(json.dumps(fail_cleanly(go), indent=2))


@click.command()
@data_option
@click.option("--model", "run_url", required=True, metavar="RUN", help="A run folder written by 'metdata train'.")
@click.option("--split", "side", type=click.Choice(["val", "train", "all"]), default="val", show_default=True)
@checkpoint_option
@click.option(
    "--store", type=StoreName(), default=None, help="The Zarr store under ROOT to score  [default: the run's store]."
)
@click.option(
    "--allow-other-data",
    is_flag=True,
    help="Score a store the run was not trained on (its images of the split's objects, by object id).",
)
@storage_option
def evaluate(data, run_url, side, checkpoint, store, allow_other_data, storage_options) -> None:
    """Accuracy, per-class precision/recall/F1 and a confusion matrix, written to RUN.

    Refuses a store other than the run's own unless --allow-other-data; then writes
    evaluation-SIDE-ID.json, ID being that store's fingerprint, beside the run's own evaluation.
    """
    from metdata.predict.evaluation import evaluate as job
    from metdata.storage.dataset import Dataset

    dataset = Dataset(data, storage_options)

    def go():
        dataset.check_output(run_url, "--model", storage_options)  # evaluation files are written into RUN
        return job(dataset, run_url, side, checkpoint, store, allow_other_data)

    report = fail_cleanly(go)
    click.echo(json.dumps(report, indent=2))


@click.command()
@click.option("--model", "run_url", required=True, metavar="RUN", help="A run folder written by 'metdata train'.")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE_PATH_OR_URL...")
@click.option("--top", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON with every class's probability.")
@checkpoint_option
@storage_option
def predict(run_url, images, top, as_json, checkpoint, storage_options) -> None:
    """The top classes of each image (local path or http(s) URL), decoded and resized like the store."""
    from metdata.predict.prediction import predict as job

    results = fail_cleanly(job, run_url, list(images), storage_options, top, checkpoint)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for result in results:
        ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
        click.echo(f"{result['image']}: {ranked}")
