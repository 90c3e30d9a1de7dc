"""Training against hostile leftovers: checkpoints cut by a kill, another store given to evaluate,
a corrupt Zarr chunk, non-finite options. A small emulator-built store (32x32, chunks of 8)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
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

from metdata.core.targets import resolve
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.errors import UserError
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import CorruptChunk, ImageStore
from metdata.train import stream, training

REPO = Path(__file__).resolve().parent.parent
TARGET = "painting-culture"


@pytest.fixture(scope="module")
def met():
    emulator = MetEmulator(EmulatorConfig(objects=1200, seed=11, throttle=False, mix="dense")).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def store(met, dask_client, tmp_path_factory) -> Dataset:
    """~120 paintings of the four classes at 32x32, in chunks of 8 slots."""
    dataset = ingested(met, dask_client, tmp_path_factory.mktemp("data"))
    build(dask_client, dataset, image_options(met, chunk=8), target=TARGET)
    return dataset


def options(out, **overrides):
    from metdata.jobs.train import TrainOptions

    return TrainOptions(
        **{"target": TARGET, "out": str(out), "epochs": 2, "batch_size": 32, "augment": False, **overrides}
    )


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory) -> Path:
    """A complete two-epoch run on the store."""
    from metdata.jobs.train import run

    out = tmp_path_factory.mktemp("finished") / "run"
    assert run(store, options(out))["complete"]
    return out


def png(tmp_path: Path, store: Dataset) -> str:
    rgb = zarr.open_group(store.path("images.zarr"), mode="r")["images"][0]
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def predicts(run_dir: Path, image: str, checkpoint: str) -> None:
    from metdata.cli.train import predict

    result = CliRunner().invoke(predict, ["--model", str(run_dir), "--checkpoint", checkpoint, "--json", image])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)[0]["probabilities"]) == 4


def test_a_checkpoint_is_whole_or_absent(tmp_path):
    import keras

    from metdata.train.models import ModelOptions, build_model
    from metdata.train.runfolder import check_resume, checkpoint_note, save_checkpoint

    model = build_model("seed-cnn", ModelOptions(32, 3, augment=False))
    path = tmp_path / "best.keras"
    save_checkpoint(model, path, {"epoch": 4, "val_accuracy": 0.5})
    assert checkpoint_note(path) == {"epoch": 4, "val_accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]  # no temporary file left
    keras.models.load_model(path)
    whole = path.read_bytes()
    for cut in (0, 100, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        assert checkpoint_note(path) is None, cut
    (tmp_path / ".best.0123.tmp.keras").write_bytes(whole[:100])  # a save a kill interrupted
    check_resume(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the damaged checkpoint and the stray save are gone


KILL_MID_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from keras.src.saving import saving_lib

    real, calls = saving_lib._save_model_to_fileobj, []

    def cut(model, f, weights_format):  # the n-th model save dies after writing part of the zip
        calls.append(1)
        if len(calls) == int(sys.argv[1]):
            f.write(b"PK\\x03\\x04 part of a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(model, f, weights_format)

    saving_lib._save_model_to_fileobj = cut
    from metdata.cli import main
    main(sys.argv[2:], prog_name="metdata")
    """
)


def test_a_kill_during_a_checkpoint_write_leaves_whole_files_and_the_run_resumes(store, tmp_path):
    from metdata.train.runfolder import BACKUP, checkpoint_note

    out = tmp_path / "run"
    args = ["train", "--data", store.url, "--target", TARGET, "--out", str(out)]
    args += ["--epochs", "3", "--batch-size", "32", "--no-augment"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # saves per epoch: best.keras (when it improves), then model.keras: the 3rd is epoch 2's first save
    killed = subprocess.run(
        [sys.executable, "-c", KILL_MID_SAVE, "3", *args], cwd=REPO, env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / BACKUP).exists() and not json.loads((out / "run.json").read_text())["complete"]
    assert checkpoint_note(out / "best.keras")["epoch"] == 0 and checkpoint_note(out / "model.keras")["epoch"] == 0
    assert list(out.glob(".*.tmp.keras"))  # the cut save is a temporary file, not a checkpoint

    resumed = subprocess.run(
        [sys.executable, "-m", "metdata", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((out / "run.json").read_text())
    assert summary["complete"] and summary["epochs_run"] == 3
    assert not list(out.glob(".*")), list(out.glob(".*"))
    assert checkpoint_note(out / "model.keras")["epoch"] == 2
    assert checkpoint_note(out / "best.keras")["epoch"] == summary["best_epoch"]
    image = png(tmp_path, store)
    predicts(out, image, "best")
    predicts(out, image, "last")


class StopAfter:
    """A callback that stops the process's training at the end of an epoch, as a kill would."""

    def __new__(cls, epoch: int):
        import keras

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, e, logs=None):
                if e == epoch:
                    raise KeyboardInterrupt

        return Stop()


def test_truncated_checkpoints_are_not_trusted_on_resume(store, tmp_path, caplog):
    from metdata.jobs.train import run
    from metdata.train.runfolder import checkpoint_note

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(store, options(out), callbacks=[StopAfter(1)])  # both epochs done, not yet complete
    for name in ("best.keras", "model.keras"):  # as a kill mid-write left them before atomic saves
        whole = (out / name).read_bytes()
        (out / name).write_bytes(whole[: len(whole) // 3])
    with caplog.at_level(logging.WARNING, logger="metdata.train.runfolder"):
        summary = run(store, options(out))
    assert "best.keras is damaged" in caplog.text and "model.keras is missing, damaged or behind" in caplog.text
    assert summary["complete"] and summary["best_epoch"] == 1  # the only weights left: the last epoch's
    assert checkpoint_note(out / "best.keras")["val_accuracy"] == summary["best_val_accuracy"]
    image = png(tmp_path, store)
    predicts(out, image, "best")
    predicts(out, image, "last")

    # a complete run whose checkpoint was damaged afterwards: named, with the fix, never a Keras traceback
    whole = (out / "best.keras").read_bytes()
    (out / "best.keras").write_bytes(whole[:1000])
    with pytest.raises(UserError, match=r"best.keras is damaged.*--checkpoint last.*run.json"):
        run(store, options(out))
    from metdata.cli.train import predict

    result = CliRunner().invoke(predict, ["--model", str(out), image])
    assert result.exit_code == 1 and "best.keras is damaged" in result.output, result.output
    predicts(out, image, "last")


def rewrite_store(root: Path, order: np.ndarray | None = None, size: int | None = None) -> None:
    """Make root's store another store: its slots in ``order`` and/or images of another size."""
    path = str(root / "images.zarr")
    old = zarr.open_group(path, mode="r")
    attrs = dict(old.attrs)
    ids, valid, images = old["object_id"][:], old["valid"][:], old["images"][:]
    if order is not None:
        ids, valid, images = ids[order], valid[order], images[order]
    if size is not None:
        images = np.stack([cv2.resize(im, (size, size)) for im in images])
    n, side, chunk = len(ids), images.shape[1], old["images"].chunks[0]
    new = zarr.open_group(path, mode="w")
    new.create_array("images", shape=images.shape, chunks=(chunk, side, side, 3), dtype="uint8")
    new.create_array("object_id", shape=(n,), chunks=(chunk,), dtype="int64")
    new.create_array("valid", shape=(n,), chunks=(chunk,), dtype="bool")
    new["images"][:], new["object_id"][:], new["valid"][:] = images, ids, valid
    new.attrs.update({**attrs, "size": side, "created_at": dt.datetime.now(dt.UTC).isoformat()})


def test_evaluate_refuses_another_store_and_scores_it_by_object_id_when_allowed(store, finished, tmp_path):
    from metdata.cli.train import evaluate

    run_json = json.loads((finished / "run.json").read_text())
    own_id = run_json["fingerprint"]["id"]
    assert run_json["fingerprint"] == ImageStore.open(store).fingerprint
    result = CliRunner().invoke(evaluate, ["--data", store.url, "--model", str(finished)])
    assert result.exit_code == 0, result.output
    own = json.loads((finished / "evaluation-val.json").read_text())
    assert own["trained_on_this_data"] and own["images"] == run_json["val_images"]

    other = tmp_path / "other"
    shutil.copytree(store.url, other)
    n = zarr.open_group(str(other / "images.zarr"), mode="r")["object_id"].shape[0]
    rewrite_store(other, order=np.arange(n)[::-1])  # the same images, every slot number changed
    other_id = ImageStore.open(Dataset(str(other))).fingerprint["id"]
    result = CliRunner().invoke(evaluate, ["--data", str(other), "--model", str(finished)])
    assert result.exit_code == 1
    assert own_id in result.output and other_id in result.output and "--allow-other-data" in result.output

    before = (finished / "evaluation-val.json").read_bytes()
    result = CliRunner().invoke(evaluate, ["--data", str(other), "--model", str(finished), "--allow-other-data"])
    assert result.exit_code == 0, result.output
    assert (finished / "evaluation-val.json").read_bytes() == before  # the run's own evaluation is kept
    scored = json.loads((finished / f"evaluation-val-{other_id[:8]}.json").read_text())
    assert (finished / f"confusion-val-{other_id[:8]}.png").exists()
    assert not scored["trained_on_this_data"] and scored["data"]["id"] == other_id
    # by object id: the same images, so the same confusion matrix (slot numbers would score others)
    assert scored["images"] == own["images"] and scored["confusion"] == own["confusion"]

    smaller = tmp_path / "smaller"
    shutil.copytree(store.url, smaller)
    rewrite_store(smaller, size=40)
    result = CliRunner().invoke(evaluate, ["--data", str(smaller), "--model", str(finished), "--allow-other-data"])
    assert result.exit_code == 1
    assert "holds 40x40 images" in result.output and "--size 32" in result.output, result.output


def test_a_corrupt_chunk_is_named_with_its_fix(store, finished, met, dask_client, tmp_path):
    from metdata.predict.evaluation import evaluate

    copy = tmp_path / "data"
    shutil.copytree(store.url, copy)
    data = Dataset(str(copy))
    slots = training.load_slots(ImageStore.open(data), resolve(TARGET))
    chunk = sorted(stream.chunk_plan(slots))[1]
    (copy / "images.zarr" / "images" / "c" / str(chunk) / "0" / "0" / "0").write_bytes(b"not zstd" * 50)
    named = rf"chunk {chunk} of the image array .*images.zarr/images/c/{chunk}/0/0/0.*images/part-{chunk:06d}.parquet"
    # the command, in its own process: a clear message and exit 1, and the process ends (no pipeline hang)
    command = [sys.executable, "-m", "metdata", "train", "--data", str(copy), "--target", TARGET]
    command += ["--out", str(tmp_path / "run"), "--epochs", "1", "--no-augment"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: chunk") and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert re.search(named, error), error
    run_copy = tmp_path / "finished"
    shutil.copytree(finished, run_copy)
    with pytest.raises(CorruptChunk, match=named):
        evaluate(data, str(run_copy), side="all")

    # the fix the message gives: delete the chunk's status shard and rerun the images stage
    (copy / "images" / f"part-{chunk:06d}.parquet").unlink()
    build(dask_client, data, image_options(met, chunk=8), target=TARGET)
    group = zarr.open_group(str(copy / "images.zarr"), mode="r")
    original = zarr.open_group(store.path("images.zarr"), mode="r")
    rows = slice(chunk * 8, (chunk + 1) * 8)
    assert np.array_equal(group["images"][rows], original["images"][rows])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, 1.0])
def test_a_val_fraction_that_is_not_a_share_is_refused(value, store):
    from metdata.jobs.train import TrainOptions

    with pytest.raises(UserError, match="is not a share of the images"):
        TrainOptions(target=TARGET, out="r", val_fraction=value)
    with pytest.raises(UserError, match="is not a share of the images"):
        training.split(training.load_slots(ImageStore.open(store), resolve(TARGET)), value)
