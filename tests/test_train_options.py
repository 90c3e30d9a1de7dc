"""Training options (issue 15): precision, XLA and steps per execution; pretrained backbones trained
in two phases; TensorBoard logs, the learning-rate schedule and early stopping; all recorded in
run.json and resumed. A small emulator-built store (32x32, chunks of 8); backbones with weights
"none" or from a file saved here (no ImageNet download on this machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from test_images import build, image_options, ingested

from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.errors import UserError
from metdata.jobs.train import TrainOptions
from metdata.storage.dataset import Dataset
from metdata.train.runfolder import RunMismatch, check_settings
from metdata.train.schedule import Schedule

REPO = Path(__file__).resolve().parent.parent
TARGET = "painting-culture"
B0 = "efficientnetv2-b0"


# --- the pure core: the schedule and the options -------------------------------------------


def test_schedule_phases_rates_and_early_stopping():
    two = Schedule(epochs=6, learning_rate=1e-3, head_epochs=2, fine_tune_lr=1e-5, plateau=1, factor=0.5)
    assert [two.phase(e) for e in range(4)] == ["head", "head", "main", "main"]
    # the head phase at 1e-3; the next phase starts at fine_tune_lr, its plateaus counted afresh
    losses = [2.0, 2.0, 1.0, 1.0, 1.0]
    assert [two.learning_rate_at(e, losses) for e in range(6)] == [1e-3, 1e-3, 1e-5, 1e-5, 5e-6, 2.5e-6]
    assert two.learning_rate_at(2, [2.0, 2.5]) == 1e-5  # the head's plateau does not carry over
    constant = Schedule(epochs=5, learning_rate=0.01)
    assert {constant.learning_rate_at(e, [1, 1, 1, 1]) for e in range(5)} == {0.01}
    floor = Schedule(epochs=50, learning_rate=1e-6, plateau=1, factor=0.1, min_lr=1e-7)
    assert floor.learning_rate_at(10, [1.0] * 10) == 1e-7

    stop = Schedule(epochs=10, learning_rate=1e-3, early_stopping=2)
    assert stop.stop_epoch([0.5, 0.7, 0.6, 0.7, 0.65]) == 4  # 0.7 again is no improvement
    assert stop.stop_epoch([0.5, 0.6, 0.7, 0.8]) is None
    assert not Schedule(epochs=10, learning_rate=1e-3).stops_after([0.9, 0.1, 0.1, 0.1])
    # only the last phase counts: a head phase that plateaus moves on to fine-tuning
    head = Schedule(epochs=10, learning_rate=1e-3, head_epochs=4, early_stopping=1)
    assert head.stop_epoch([0.9, 0.1, 0.1, 0.1]) is None and head.stop_epoch([0.9, 0.1, 0.1, 0.1, 0.5, 0.4]) == 6


def test_options_resolve_per_model_and_machine():
    cnn = TrainOptions(TARGET, "r").resolved()
    assert (cnn.weights, cnn.head_epochs, cnn.precision, cnn.pretrained) == ("none", 0, "float32", False)
    assert cnn.schedule().head_epochs == 0
    backbone = TrainOptions(TARGET, "r", model=B0, epochs=30, early_stopping=4, lr_schedule="plateau")
    on_cpu = backbone.resolved(gpus=0)
    assert (on_cpu.weights, on_cpu.head_epochs, on_cpu.precision, on_cpu.pretrained) == ("imagenet", 5, "float32", True)
    assert on_cpu.schedule() == Schedule(30, 1e-3, head_epochs=5, fine_tune_lr=1e-5, plateau=3, early_stopping=4)
    assert backbone.resolved(gpus=8, bf16=True).precision == "mixed_bfloat16"
    assert backbone.resolved(gpus=1, bf16=False).precision == "mixed_float16"  # pre-Ampere: float16 + loss scaling
    assert TrainOptions(TARGET, "r", precision="float32").resolved(gpus=1, bf16=True).precision == "float32"
    scratch = TrainOptions(TARGET, "r", model=B0, weights="none").resolved()
    assert (scratch.head_epochs, scratch.pretrained, scratch.schedule().head_epochs) == (0, False, 0)
    assert TrainOptions(TARGET, "r", model=B0, weights="w.weights.h5", head_epochs=0).resolved().pretrained


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weights": "imagenet"}, "seed-cnn has no pretrained weights"),
        ({"model": B0, "weights": "none", "head_epochs": 3}, "needs a backbone with pretrained weights"),
        ({"head_epochs": 2}, "needs a backbone with pretrained weights"),
        ({"jit": True}, "XLA cannot compile Keras' random image layers"),
        ({"learning_rate": float("nan")}, "positive learning rate"),
        ({"fine_tune_lr": 0.0}, "positive learning rate"),
        ({"learning_rate": True}, "positive learning rate"),
        ({"precision": "float8"}, "choose auto or one of"),
        ({"lr_schedule": "cosine"}, "choose one of constant, plateau"),
        ({"steps_per_execution": 0}, "at least 1"),
        ({"early_stopping": -1}, "at least 0"),
        ({"model": B0, "weights": "  "}, "give imagenet, none or the path"),
    ],
)
def test_options_that_do_not_fit_together_are_refused(fields, message):
    with pytest.raises(UserError, match=message):
        TrainOptions(TARGET, "r", **fields)


def test_the_command_line_refuses_them_with_a_message(tmp_path):
    from metdata.cli.train import train

    base = ["--data", str(tmp_path), "--target", TARGET, "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(train, [*base, "--weights", "imagenet"])
    assert result.exit_code == 1 and "seed-cnn has no pretrained weights" in result.output
    result = CliRunner().invoke(train, [*base, "--precision", "fp8"])
    assert result.exit_code == 2 and "fp8" in result.output
    assert not (tmp_path / "r").exists()


def test_resume_accepts_an_older_run_json_and_other_execution_settings():
    wanted = {"model": "seed-cnn", "epochs": 5, "jit": None, "steps_per_execution": None}
    now = {**wanted, "learning_rate": 1e-3, "weights": "none", "precision": "float32", "early_stopping": 0}
    check_settings(wanted, now, "RUN")  # written before these settings: it was trained with their implied values
    check_settings({**now, "jit": True, "steps_per_execution": 32}, now, "RUN")  # how it runs, not what it learns
    for changed in ({"precision": "mixed_bfloat16"}, {"weights": "imagenet"}, {"early_stopping": 3}):
        with pytest.raises(RunMismatch, match=next(iter(changed))):
            check_settings(now, {**now, **changed}, "RUN")


# --- the models ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, loading the wrong file on purpose
def test_a_backbone_loads_weights_from_a_file_and_freezes_by_stage(tmp_path):
    import keras
    from keras.src.trainers.trainer import model_supports_jit

    from metdata.train.models import (
        FINE_TUNE,
        HEAD,
        ModelOptions,
        WeightsError,
        backbone_layers,
        build_model,
        set_stage,
    )
    from metdata.train.models import supports_jit as declared

    bare = keras.applications.EfficientNetV2B0(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "b0.weights.h5"
    bare.save_weights(path)
    model = build_model(B0, ModelOptions(32, 4, augment=False, weights=str(path)))
    assert model_supports_jit(model) == declared(B0, augment=False)
    by_name = {la.name: la for la in model.layers}
    for name in ("stem_conv", "stem_bn", "block3a_expand_conv", "top_conv"):  # the file's weights, copied
        for a, b in zip(bare.get_layer(name).get_weights(), by_name[name].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert [la.name for la in model.layers[-3:]] == ["head_pool", "head_dropout", "probabilities"]
    body = backbone_layers(model)
    assert body[0].name.startswith("rescaling") and body[-1].name == "top_activation"

    set_stage(model, HEAD)
    assert [v.path for v in model.trainable_variables] == ["probabilities/kernel", "probabilities/bias"]
    assert not any(la.trainable for la in body)  # BatchNormalization included: inference mode
    set_stage(model, FINE_TUNE, 20)
    tuned = {la.name for la in body if la.trainable}
    assert "top_conv" in tuned and "top_bn" not in tuned and "block6h_project_bn" not in tuned
    assert "stem_conv" not in tuned and len(tuned) <= 20

    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(model.predict_on_batch(pixels).sum(axis=1), 1, atol=1e-5)  # raw uint8 in, probabilities out

    with pytest.raises(WeightsError, match="no such file"):
        build_model(B0, ModelOptions(32, 4, weights=str(tmp_path / "missing.weights.h5")))
    other = tmp_path / "cnn.weights.h5"
    build_model("seed-cnn", ModelOptions(32, 4)).save_weights(other)
    with pytest.raises(WeightsError, match="does not fit efficientnetv2-b0"):
        build_model(B0, ModelOptions(32, 4, weights=str(other)))
    with pytest.raises(UserError, match="at least 32 px"):
        build_model(B0, ModelOptions(16, 4))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_softmax_float32(policy):
    import keras

    from metdata.train.models import ModelOptions, build_model

    model = build_model("seed-cnn", ModelOptions(32, 4, precision=policy))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    assert model.get_layer("probabilities").compute_dtype == "float32" and model.output.dtype == "float32"
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    assert {la.compute_dtype for la in convs} == {policy.removeprefix("mixed_")}
    assert {la.variable_dtype for la in convs} == {"float32"}
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.optimizer.learning_rate = 0.5
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == 0.5


# --- whole runs on a store -----------------------------------------------------------------


@pytest.fixture(scope="module")
def store(dask_client, tmp_path_factory) -> Dataset:
    """~120 paintings of the four classes at 32x32, in chunks of 8 slots."""
    met = MetEmulator(EmulatorConfig(objects=1200, seed=11, throttle=False, mix="dense")).start()
    try:
        dataset = ingested(met, dask_client, tmp_path_factory.mktemp("data"))
        build(dask_client, dataset, image_options(met, chunk=8), target=TARGET)
    finally:
        met.stop()
    return dataset


class Interrupt(Exception):
    """Stands in for a kill at an epoch's end (after the backup and checkpoints were written)."""


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """TensorBoard's scalars under ``folder``: 'train/epoch_loss' -> {step: value}, every event file read."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                found.setdefault(f"{path.parent.name}/{value.tag}", {})[event.step] = float(tensor)
    return found


def test_early_stopping_ends_the_run_and_a_stopped_run_resumes_stopped(store, tmp_path):
    """A rate too small to learn: the checkpoint metric never improves, so patience 1 stops after
    two epochs; killed right then, the rerun trains no more. With XLA and 2 steps per execution."""
    import keras

    from metdata.jobs.train import run

    out = tmp_path / "run"
    options = TrainOptions(
        target=TARGET,
        out=str(out),
        epochs=20,
        batch_size=32,
        augment=False,
        learning_rate=1e-12,
        early_stopping=1,
        jit=True,
        steps_per_execution=2,
        devices="1",
    )

    class KillAtTheStop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if self.model.stop_training:
                raise Interrupt

    with pytest.raises(Interrupt):
        run(store, options, callbacks=[KillAtTheStop()])
    summary = run(store, options)
    assert summary["stopped_early"] and summary["epochs_run"] == 2 and summary["best_epoch"] == 0
    assert summary["jit_compile"] and summary["steps_per_execution_used"] == 2
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [0, 1]
    assert not (out / "backup").exists()
    assert json.loads((out / "run.json").read_text())["early_stopping"] == 1


def test_an_s3_run_mirrors_its_tensorboard_logs(store, s3):
    from metdata.jobs.train import run

    root, storage = s3
    out = f"{root}/runs/cnn"
    summary = run(store, TrainOptions(target=TARGET, out=out, epochs=2, batch_size=32, augment=False), storage)
    assert summary["complete"]
    remote = Dataset(out, storage)
    files = [p for p in remote.fs.find(remote.path("logs")) if "events.out.tfevents" in p]
    assert {p.split("/")[-2] for p in files} == {"train", "validation"}
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"mirror-{os.getpid()}"
    remote.fs.get(remote.path("logs"), str(local), recursive=True)
    try:
        assert set(scalars(local)["validation/epoch_loss"]) == {0, 1}
    finally:
        import shutil

        shutil.rmtree(local, ignore_errors=True)


BFLOAT16_REPLICAS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from metdata.train import stream, training
    from metdata.storage.dataset import Dataset
    from metdata.storage.imagestore import ImageStore
    from metdata.train.models import ModelOptions, build_model
    from metdata.core.targets import resolve

    store = ImageStore.open(Dataset(sys.argv[1]))
    slots = training.load_slots(store, resolve("painting-culture"))
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    runs = []
    for n in (1, 2):
        keras.utils.set_random_seed(3)
        strategy = tf.distribute.MirroredStrategy(devices[:n])
        batches = stream.build_dataset(store, slots, stream.InputOptions(32, shuffle=True, seed=5))
        with strategy.scope():
            options = ModelOptions(32, len(slots.classes), augment=False, precision="mixed_bfloat16")
            model = build_model("seed-cnn", options)
        start = [w.tolist() for w in model.get_weights()]
        losses = model.fit(batches, epochs=3, verbose=0).history["loss"]
        runs.append({"start": start, "end": [w.tolist() for w in model.get_weights()], "loss": losses})
    print(json.dumps(runs))
    """
)


def test_two_replicas_train_like_one_under_bfloat16(store):
    """mixed_bfloat16 learns (the loss falls) and 2 replicas follow 1 closely: each replica rounds its
    half-batch gradients to bfloat16, so they agree to a share of the distance trained, not to 2e-4."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", BFLOAT16_REPLICAS, store.url], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = json.loads(result.stdout.strip().splitlines()[-1])
    for run_ in (one, two):
        assert run_["loss"][-1] < run_["loss"][0] - 0.05, run_["loss"]
    np.testing.assert_allclose(one["loss"], two["loss"], atol=0.01)
    apart, moved = distance(one["end"], two["end"]), distance(one["end"], one["start"])
    assert moved > 0.1 and apart < 0.25 * moved, (apart, moved)


def distance(a: list, b: list) -> float:
    """The Euclidean distance between two models' weights (lists of nested lists)."""
    return float(np.sqrt(sum(((np.array(x) - np.array(y)) ** 2).sum() for x, y in zip(a, b, strict=True))))


@pytest.mark.timeout(900)  # tracing a backbone's 270 layers three times takes minutes on 2 shared cores
def test_a_pretrained_backbone_trains_in_two_phases_resumes_and_predicts(store, tmp_path):
    """Weights from a file; the head alone for an epoch, then fine-tuning; killed after the first
    fine-tuning epoch and resumed into that phase; frozen layers and BatchNormalization untouched."""
    import keras

    from metdata.cli.train import predict
    from metdata.jobs.train import run
    from metdata.predict.prediction import load

    bare = keras.applications.EfficientNetV2B0(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "b0.weights.h5"
    bare.save_weights(path)
    initial = {name: bare.get_layer(name).get_weights() for name in ("stem_conv", "stem_bn", "top_conv")}
    out = tmp_path / "run"
    options = TrainOptions(
        target=TARGET,
        out=str(out),
        model=B0,
        weights=str(path),
        epochs=3,
        head_epochs=1,
        batch_size=64,
        augment=False,
        lr_schedule="plateau",
        lr_patience=1,
    )
    seen = {}

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = {name: self.model.get_layer(name).get_weights() for name in initial}
            if epoch == 1:
                raise Interrupt

    with pytest.raises(Interrupt):
        run(store, options, callbacks=[Watch()])
    assert json.loads((out / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    for name, weights in initial.items():  # the head epoch trained the head only
        for a, b in zip(weights, seen[0][name], strict=True):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(initial["top_conv"], seen[1]["top_conv"], strict=True))

    kept = {}

    class Keep(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            kept["model"] = self.model

    summary = run(store, options, callbacks=[Keep()])
    assert summary["complete"] and summary["epochs_run"] == 3 and not summary["stopped_early"]
    assert (summary["weights"], summary["head_epochs"], summary["precision"]) == (str(path), 1, "float32")
    final = {name: kept["model"].get_layer(name).get_weights() for name in initial}
    for name in ("stem_conv", "stem_bn"):  # below the top 20 layers: as loaded; BatchNormalization never updated
        for a, b in zip(initial[name], final[name], strict=True):
            np.testing.assert_array_equal(a, b)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    schedule = TrainOptions(**{**options.__dict__}).resolved().schedule()
    losses = [h["val_loss"] for h in history]
    for h in history:  # the rates the schedule gives, replayed across the kill
        assert h["learning_rate"] == pytest.approx(schedule.learning_rate_at(h["epoch"], losses), rel=1e-6)
    assert history[0]["learning_rate"] == pytest.approx(1e-3) and history[1]["learning_rate"] == pytest.approx(1e-5)

    logged = scalars(out / "logs")  # both processes' event files: every epoch once
    assert set(logged["train/epoch_loss"]) == set(logged["validation/epoch_accuracy"]) == {0, 1, 2}
    assert logged["train/epoch_learning_rate"][2] == pytest.approx(history[2]["learning_rate"], rel=1e-6)

    pixels = zarr.open_group(store.path("images.zarr"), mode="r")["images"][:2]
    images = []
    for i, rgb in enumerate(pixels):
        images.append(str(tmp_path / f"p{i}.png"))
        cv2.imwrite(images[-1], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    result = CliRunner().invoke(predict, ["--model", str(out), "--checkpoint", "last", "--json", *images])
    assert result.exit_code == 0, result.output
    expected = kept["model"].predict_on_batch(pixels)
    for row, probs in zip(json.loads(result.output), expected, strict=True):
        np.testing.assert_allclose([row["probabilities"][c] for c in summary["classes"]], probs, atol=1e-5)
    predictor = load(str(out), checkpoint="model.keras")  # what serve loads; Grad-CAM finds the backbone's conv
    heat = predictor.gradcam(pixels[0])
    assert heat.ndim == 2 and np.all((heat >= 0) & (heat <= 1))
