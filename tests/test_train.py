"""Training against a real emulator-built store: learning, split, resume, replicas, S3 input, predict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner
from test_images import build, image_options, ingested

from metdata.cluster.tfconfig import on_this_machine
from metdata.core.targets import resolve
from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.errors import UserError
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.train import stream, training

REPO = Path(__file__).resolve().parent.parent
TARGET = "painting-culture"


@pytest.fixture(scope="module")
def store(dask_client, tmp_path_factory) -> Dataset:
    """~300 paintings of the four classes at 32x32, from 3,000 emulated objects."""
    met = MetEmulator(EmulatorConfig(objects=3000, seed=11, throttle=False, mix="dense")).start()
    try:
        dataset = ingested(met, dask_client, tmp_path_factory.mktemp("data"))
        build(dask_client, dataset, image_options(met), target=TARGET)
    finally:
        met.stop()
    return dataset


def test_split_is_deterministic_stratified_and_leak_free(store):
    slots = training.load_slots(ImageStore.open(store), resolve(TARGET))
    assert len(slots) > 200 and set(slots.counts()) == {"America", "China", "India", "Japan"}
    is_val = training.split(slots, 0.2)
    assert np.array_equal(is_val, training.split(training.load_slots(ImageStore.open(store), resolve(TARGET)), 0.2))
    for name, n in slots.counts().items():
        n_val = slots.take(is_val).counts()[name]
        assert abs(n_val - 0.2 * n) <= 2, (name, n_val, n)
    # make duplicates: give some train images the digest of a val image; the group moves together
    dup = slots.sha256.copy()
    val_idx, train_idx = np.flatnonzero(is_val)[:3], np.flatnonzero(~is_val)[:3]
    for v, t in zip(val_idx, train_idx, strict=True):
        dup[t] = dup[v]
    shared = training.Slots(slots.slot, slots.object_id, slots.label, dup, slots.classes, 32, "squash", 16)
    sides = training.split(shared, 0.2)
    for v, t in zip(val_idx, train_idx, strict=True):
        assert sides[v] == sides[t]


def test_train_learns_and_predict_matches_the_in_memory_model(store, tmp_path, recwarn, monkeypatch):
    import keras

    opened = []  # every Zarr open of the dataset: a run, then an evaluate, each opens the store once
    open_zarr = Dataset.open_zarr
    monkeypatch.setattr(Dataset, "open_zarr", lambda self, *a, **k: opened.append(a[0]) or open_zarr(self, *a, **k))

    from metdata.cli.train import predict
    from metdata.jobs.train import TrainOptions, run

    class Keep(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            kept["model"] = self.model

    kept = {}
    out = tmp_path / "run"
    options = TrainOptions(target=TARGET, out=str(out), epochs=10, batch_size=32, seed=1)
    summary = run(store, options, callbacks=[Keep()])
    assert opened == ["images.zarr"]
    assert summary["best_val_accuracy"] > 0.5, summary  # chance is 0.25
    for name in ("model.keras", "best.keras", "run.json", "split.parquet", "history.json", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "backup").exists()
    assert len(json.loads((out / "history.json").read_text())) == 10
    # one optimizer step per batch: Keras knows each epoch's length, asks for no step past it (an empty batch)
    steps = keras.ops.convert_to_numpy(kept["model"].optimizer.iterations)
    assert steps == 10 * -(-summary["train_images"] // 32), steps
    noise = ("Your input ran out of data", "`shuffle=True` was passed")
    assert not [w for w in recwarn if str(w.message).startswith(noise)], [str(w.message) for w in recwarn]

    pixels = zarr.open_group(str(Path(store.url) / "images.zarr"), mode="r")["images"][:3]
    paths = []
    for i, rgb in enumerate(pixels):
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    result = CliRunner().invoke(predict, ["--model", str(out), "--checkpoint", "last", "--json", *paths])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    expected = kept["model"].predict_on_batch(pixels)
    for row, probs in zip(printed, expected, strict=True):
        got = [row["probabilities"][c] for c in summary["classes"]]
        np.testing.assert_allclose(got, probs, atol=1e-5)

    # evaluate the best checkpoint on the validation side: it is the epoch that set best_val_accuracy
    from metdata.cli.train import evaluate

    opened.clear()
    result = CliRunner().invoke(evaluate, ["--data", store.url, "--model", str(out), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert opened == ["images.zarr"]
    report = json.loads((out / "evaluation-val.json").read_text())
    split = pq.read_table(out / "split.parquet").to_pylist()
    val = [r for r in split if r["side"] == "val"]
    assert report["images"] == len(val) == sum(map(sum, report["confusion"]))
    assert report["accuracy"] == pytest.approx(summary["best_val_accuracy"], abs=1e-6)
    assert report["accuracy"] == pytest.approx(np.trace(report["confusion"]) / len(val))
    assert set(report["per_class"]) == set(summary["classes"]) and (out / "confusion-val.png").stat().st_size > 0

    # the same command again: already complete; other settings: refused, nothing overwritten
    before = (out / "model.keras").read_bytes()
    assert run(store, options)["complete"]
    with pytest.raises(UserError, match="holds another run"):
        run(store, TrainOptions(target=TARGET, out=str(out), epochs=10, batch_size=16, seed=1))
    assert (out / "model.keras").read_bytes() == before


def test_bad_input_is_refused_clearly(store, tmp_path):
    from metdata.jobs.train import TrainOptions, run

    with pytest.raises(UserError, match="no image store"):
        run(store, TrainOptions(target=TARGET, out=str(tmp_path / "r"), store="nope.zarr"))
    with pytest.raises(UserError, match="unknown model"):
        run(store, TrainOptions(target=TARGET, out=str(tmp_path / "r"), model="resnet-9000"))
    one = tmp_path / "one.toml"
    one.write_text('name = "one"\nfields = ["culture"]\n[[rules]]\nclass = "India"\ncontains = ["india"]\n')
    with pytest.raises(UserError, match="at least two"):
        run(store, TrainOptions(target=str(one), out=str(tmp_path / "r")))


@pytest.mark.parametrize("damaged", ["images.zarr/zarr.json", "images.zarr/valid/zarr.json"])
def test_a_damaged_store_is_named_not_a_traceback(store, tmp_path, damaged):
    import shutil

    from metdata.jobs.train import TrainOptions, run

    copy = tmp_path / "data"
    shutil.copytree(store.url, copy)
    (copy / damaged).write_text("{ not json")
    with pytest.raises(UserError, match=r"is not a readable Zarr store.*delete it and rerun 'metdata images'"):
        run(Dataset(str(copy)), TrainOptions(target=TARGET, out=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_a_killed_run_resumes_at_the_right_epoch(store, tmp_path):
    out = tmp_path / "run"
    # the command object itself (as 'metdata train' runs it), in a process that can be killed
    command = [sys.executable, "-m", "metdata", "train", "--data", store.url]
    command += ["--target", TARGET]
    command += ["--out", str(out), "--epochs", "12", "--batch-size", "32", "--no-augment"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    history = out / "history.json"
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(json.loads(history.read_text()))
    assert 2 <= done < 12, "the run was not stopped mid-training"
    backup_epoch = json.loads((out / "backup" / "training_metadata.json").read_text())["epoch"]
    assert backup_epoch in (done, done - 1)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Epoch {backup_epoch + 1}/12" in result.stdout + result.stderr
    assert "Epoch 1/12" not in result.stdout + result.stderr
    final = json.loads(history.read_text())
    assert [h["epoch"] for h in final] == list(range(12))
    assert json.loads((out / "run.json").read_text())["complete"]


REPLICAS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    from metdata.train import stream, training
    from metdata.storage.dataset import Dataset
    from metdata.storage.imagestore import ImageStore
    from metdata.train.models import ModelOptions, build_model
    from metdata.core.targets import resolve

    store = ImageStore.open(Dataset(sys.argv[1]))
    slots = training.load_slots(store, resolve("painting-culture"))
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    results = []
    for n in (1, 2):
        keras.utils.set_random_seed(3)
        strategy = tf.distribute.MirroredStrategy(devices[:n])
        batches = stream.build_dataset(store, slots, stream.InputOptions(32, shuffle=True, seed=5))
        with strategy.scope():
            model = build_model("seed-cnn", ModelOptions(32, len(slots.classes), augment=False))
        model.fit(batches, epochs=1, verbose=0)
        results.append([w.tolist() for w in model.get_weights()])
    print(json.dumps({"replicas": [1, 2], "weights": results}))
    """
)


def test_two_replicas_train_like_one(store):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", REPLICAS, store.url], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = json.loads(result.stdout.strip().splitlines()[-1])["weights"]
    moved = 0.0
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=2e-4)
        moved += float(np.abs(np.array(a)).sum())
    assert moved > 0


def test_s3_input_gives_the_same_batches_as_local(store, s3):
    root, storage = s3
    remote = Dataset(root, storage)
    remote.fs.invalidate_cache()
    for folder in ("images.zarr", "images", "objects"):
        remote.fs.put(store.path(folder), remote.path(folder), recursive=True)
    remote.fs.invalidate_cache()
    local_slots = training.load_slots(ImageStore.open(store), resolve(TARGET))
    remote_slots = training.load_slots(ImageStore.open(remote), resolve(TARGET))
    assert np.array_equal(local_slots.slot, remote_slots.slot)
    options = stream.InputOptions(batch_size=48, shuffle=True, seed=9)
    for _ in range(2):  # two epochs: reshuffled the same way
        a = list(stream.build_dataset(ImageStore.open(store), local_slots, options))
        b = list(stream.build_dataset(ImageStore.open(remote), remote_slots, options))
        assert len(a) == len(b) > 2
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy())
    labels = np.concatenate([y.numpy() for _, y in a])
    assert sorted(labels.tolist()) == sorted(local_slots.label.tolist())


def worker_env(config: dict) -> dict:
    """This process's environment for one worker of a multi-worker run on 127.0.0.1."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_two_workers_train_one_run_under_multi_worker_mirrored_strategy(store, tmp_path):
    """Two processes on 127.0.0.1 with TF_CONFIG (as the multi-node overlay's pods): one run, one writer."""
    from metdata.cli.train import evaluate

    out = tmp_path / "run"
    command = [sys.executable, "-m", "metdata", "train", "--data", store.url, "--target", TARGET]
    command += ["--out", str(out), "--epochs", "3", "--batch-size", "16", "--no-augment"]
    procs, logs = [], []
    for index, config in enumerate(on_this_machine(2)):
        logs.append(tmp_path / f"worker-{index}.log")
        with logs[-1].open("w") as log:
            procs.append(
                subprocess.Popen(command, cwd=REPO, env=worker_env(config), stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]

    run_json = json.loads((out / "run.json").read_text())
    assert run_json["complete"] and run_json["workers"] == 2 and run_json["replicas"] == 2
    assert run_json["global_batch"] == 32
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [0, 1, 2]
    # the validation accuracy fit logged counts both workers' halves of every batch: the same
    # checkpoint evaluated in one process over the whole validation side gives the same figure
    result = CliRunner().invoke(evaluate, ["--data", store.url, "--model", str(out), "--split", "val"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation-val.json").read_text())
    assert report["images"] == run_json["val_images"]
    assert report["accuracy"] == pytest.approx(run_json["best_val_accuracy"], abs=1e-6)
    # RUN holds the run's files and nothing else (worker 1's own writes: test_a_worker_that_does_not_write...)
    outputs = ["best.keras", "model.keras", "run.json", "split.parquet", "history.json", "curves.png", "logs"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*outputs, "evaluation-val.json", "confusion-val.png"])


SAME_START = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    from metdata.train.distribute import check_same_start, role, strategy_for
    from metdata.errors import UserError

    this = role()
    strategy = strategy_for("all", this)
    work = Path(tempfile.mkdtemp())
    epoch = int(sys.argv[1 + this.index])  # what this worker finds in "its" RUN; -1: no backup
    if epoch >= 0:
        (work / "backup").mkdir()
        (work / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": epoch}))
        (work / "history.json").write_text(json.dumps([{"epoch": e} for e in range(epoch + 1)]))
    try:
        check_same_start(strategy, work)
        print("same")
    except UserError as exc:
        print("refused:", exc)
    """
)


@pytest.mark.parametrize(("epochs", "expected"), [(("4", "4"), "same"), (("4", "-1"), "refused")])
def test_workers_that_found_different_backups_all_refuse(epochs, expected, tmp_path):
    """A RUN that is not shared (or read mid-upload): every worker stops with the fix, none hangs."""
    command = [sys.executable, "-c", SAME_START, *epochs]
    procs = [
        subprocess.Popen(command, cwd=REPO, env=worker_env(c), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in on_this_machine(2)
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    lines = [out.decode().strip().splitlines()[-1] if out.strip() else err.decode()[-2000:] for out, err in outputs]
    assert all(line.startswith(expected) for line in lines), lines
    if expected == "refused":
        assert all("RUN must be one folder every worker reads" in line for line in lines)


def test_a_worker_that_does_not_write_leaves_run_alone(tmp_path):
    from metdata.train.runfolder import BACKUP, RunFolder

    run = tmp_path / "run"
    (run / BACKUP).mkdir(parents=True)
    (run / BACKUP / "training_metadata.json").write_text('{"epoch": 3}')
    (run / "history.json").write_text("[]")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    out = RunFolder(str(run), {}, writer=False)
    try:
        assert run not in out.work.parents and out.work != run
        out.download_state()  # the chief's backup, to resume from the same epoch
        assert json.loads((out.work / BACKUP / "training_metadata.json").read_text()) == {"epoch": 3}
        assert (out.work / "history.json").exists() and not (out.work / BACKUP / BACKUP).exists()
        (out.work / "model.keras").write_text("x")
        out.upload(("model.keras", BACKUP))
        out.remove_remote(BACKUP)
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    finally:
        out.close()
    assert not out.work.exists()
