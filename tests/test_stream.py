"""The training input stream (metdata.train.stream): its epoch plan, its batches from real Zarr stores
(local and moto S3, the images stage's codec and the one before), its cache, its buffers, and its
errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.codecs
from click.testing import CliRunner

from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import CorruptChunk, ImageStore, image_codecs
from metdata.train import chunkio, stream
from metdata.train.runfolder import check_settings
from metdata.train.training import Slots

REPO = Path(__file__).resolve().parent.parent
SIZE, CHUNK = 8, 16
CODECS = {
    "lz4hc-1": image_codecs(),  # what metdata images writes (Blosc-LZ4HC level 1, since issue 24)
    "lz4hc": [zarr.codecs.BloscCodec(cname="lz4hc", clevel=5, shuffle="shuffle")],  # the stores built before it
    "zstd": "auto",  # Zarr's default: the stores built before those
    "gzip": [zarr.codecs.GzipCodec()],  # any other codec: read through Zarr
}


def pixels(slot: np.ndarray) -> np.ndarray:
    """The image stored at each slot: every pixel says which slot it is."""
    slot = np.asarray(slot)
    out = np.empty((len(slot), SIZE, SIZE, 3), np.uint8)
    out[..., 0] = (slot % 251)[:, None, None]
    out[..., 1] = (slot // 251)[:, None, None]
    out[..., 2] = 7
    return out


def write_store(root: Path | str, n: int, codec: str = "lz4hc-1", storage: dict | None = None) -> Dataset:
    """An images.zarr of ``n`` slots (chunks of 16, the last one partial) whose images name their slot."""
    dataset = Dataset(str(root), storage or {})
    group = zarr.open_group(store=dataset.zarr_store("images.zarr"), mode="w")
    images = group.create_array(
        "images", shape=(n, SIZE, SIZE, 3), chunks=(CHUNK, SIZE, SIZE, 3), dtype="uint8", compressors=CODECS[codec]
    )
    images[:] = pixels(np.arange(n))
    group.create_array("object_id", shape=(n,), chunks=(CHUNK,), dtype="int64")[:] = np.arange(n)
    group.create_array("valid", shape=(n,), chunks=(CHUNK,), dtype="bool")[:] = True
    return dataset


def slots_of(slot: np.ndarray) -> Slots:
    """Slots labelled slot % 3 (three classes)."""
    slot = np.asarray(slot, np.int64)
    label = (slot % 3).astype(np.int32)
    return Slots(slot, slot, label, np.array([""] * len(slot), object), ("a", "b", "c"), SIZE, "squash", CHUNK)


def served(batches) -> tuple[np.ndarray, np.ndarray]:
    """The slots a list of (x, y[, w]) batches holds (read back from their pixels), and their labels."""
    x = np.concatenate([np.asarray(b[0]) for b in batches])
    y = np.concatenate([np.asarray(b[1]) for b in batches])
    assert (x[..., 2] == 7).all()
    return x[:, 0, 0, 0].astype(np.int64) + 251 * x[:, 0, 0, 1].astype(np.int64), y


def test_an_epoch_plan_serves_every_sample_once_a_window_at_a_time():
    sizes = [16, 3, 16, 9, 1, 16, 12]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for epoch in range(3):
        order, samples = stream.epoch_order(sizes, window=3, shuffle=True, seed=4, epoch=epoch)
        assert sorted(order.tolist()) == list(range(len(sizes)))
        assert sorted(samples.tolist()) == list(range(sum(sizes)))
        chunk_of = np.searchsorted(starts, samples, side="right") - 1
        done = 0
        for w in range(0, len(order), 3):  # the samples of each window come from its chunks only
            mine = order[w : w + 3]
            n = sum(sizes[c] for c in mine)
            assert set(chunk_of[done : done + n].tolist()) == set(mine.tolist())
            done += n
    a = stream.epoch_order(sizes, 3, True, seed=4, epoch=0)
    assert all(np.array_equal(p, q) for p, q in zip(a, stream.epoch_order(sizes, 3, True, 4, 0), strict=True))
    assert not np.array_equal(a[1], stream.epoch_order(sizes, 3, True, 4, 1)[1])  # reshuffled each epoch
    assert not np.array_equal(a[1], stream.epoch_order(sizes, 3, True, 5, 0)[1])
    assert not np.array_equal(a[1], stream.epoch_order(sizes, 3, True, -5, 0)[1])
    order, samples = stream.epoch_order(sizes, 3, shuffle=False, seed=4, epoch=2)
    assert order.tolist() == list(range(len(sizes))) and samples.tolist() == list(range(sum(sizes)))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_the_chunk_reader_reads_what_zarr_reads(tmp_path, codec):
    data = write_store(tmp_path, 70, codec)  # 5 chunks, the last holding 6 slots
    images = zarr.open_group(str(tmp_path / "images.zarr"), mode="r")["images"]
    read = chunkio.chunk_reader(ImageStore.open(data))
    for c in range(5):
        block = read(c, None)
        assert np.array_equal(block[: len(images[c * CHUNK : (c + 1) * CHUNK])], images[c * CHUNK : (c + 1) * CHUNK])
    again = read(1, np.zeros((CHUNK, SIZE, SIZE, 3), np.uint8))
    assert np.array_equal(again, pixels(np.arange(16, 32)))
    if codec != "gzip":  # a chunk Zarr never wrote (all fill value) reads as the fill value
        (tmp_path / "images.zarr" / "images" / "c" / "2" / "0" / "0" / "0").unlink()
        assert not read(2, None).any()
        chunk = tmp_path / "images.zarr" / "images" / "c" / "3" / "0" / "0" / "0"
        for damaged in (b"not a chunk" * 40, b""):
            chunk.write_bytes(damaged)
            with pytest.raises(RuntimeError):
                read(3, None)
        chunk.write_bytes(b"\0" * 20_000)  # more than twice the chunk's 3,072 bytes of images: never read
        with pytest.raises(ValueError, match="more than twice its images"):
            read(3, None)


def run_stream(data: Dataset, slots: Slots, options: stream.InputOptions, epochs: int = 1, reads: list | None = None):
    """Every batch of ``epochs`` epochs of a Stream over the store (no TensorFlow), all held."""
    read = chunkio.chunk_reader(ImageStore.open(data))

    def counted(c, out):
        if reads is not None:
            reads.append(c)
        return read(c, out)

    s = stream.Stream(counted, slots, options, damaged=lambda chunk, exc: CorruptChunk(f"chunk {chunk}"))
    return [list(s()) for _ in range(epochs)]


def test_the_stream_serves_the_slots_once_per_epoch_in_batches(tmp_path):
    data = write_store(tmp_path, 300)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(300, 211, replace=False))  # a split: some slots of most chunks
    options = stream.InputOptions(batch_size=32, seed=3, window=3, parallel_reads=2, weights={0: 0.5, 1: 1.0, 2: 2.0})
    epochs = run_stream(data, slots_of(keep), options, epochs=2)
    for batches in epochs:
        assert [len(b[0]) for b in batches] == [32] * 6 + [19]
        got, labels = served(batches)
        assert sorted(got.tolist()) == keep.tolist()
        assert np.array_equal(labels, got % 3)
        weights = np.concatenate([b[2] for b in batches])
        assert np.array_equal(weights, np.array([0.5, 1.0, 2.0], np.float32)[labels])
        assert all(b[0].ctypes.data % chunkio.ALIGN == 0 for b in batches)  # TensorFlow takes them without a copy
    assert not np.array_equal(served(epochs[0])[0], served(epochs[1])[0])  # reshuffled
    again = run_stream(data, slots_of(keep), options, epochs=2)
    for mine, theirs in zip(epochs, again, strict=True):  # the same seed: the same batches, epoch by epoch
        assert np.array_equal(served(mine)[0], served(theirs)[0])
    resumed = run_stream(data, slots_of(keep), replace(options, first_epoch=1))[0]  # a run resumed after 1 epoch
    assert np.array_equal(served(resumed)[0], served(epochs[1])[0])
    ordered = run_stream(data, slots_of(keep), stream.InputOptions(batch_size=50, shuffle=False))[0]
    assert served(ordered)[0].tolist() == keep.tolist()


def test_the_cache_serves_the_same_batches_within_its_budget(tmp_path):
    data = write_store(tmp_path, 160)  # 10 chunks of 16 images of 192 bytes
    slots = slots_of(np.arange(160))
    plain = run_stream(data, slots, stream.InputOptions(batch_size=24, seed=1, window=2), epochs=3)
    reads: list[int] = []
    everything = stream.InputOptions(batch_size=24, seed=1, window=2, cache_mb=1)
    cached = run_stream(data, slots, everything, epochs=3, reads=reads)
    for a, b in zip(plain, cached, strict=True):
        assert np.array_equal(served(a)[0], served(b)[0])
    assert sorted(reads) == list(range(10))  # each chunk read once: later epochs come from the cache
    budget = 4 * 16 * SIZE * SIZE * 3 / chunkio.MB  # room for 4 of the 10 chunks
    reads.clear()
    part = run_stream(data, slots, stream.InputOptions(batch_size=24, seed=1, window=2, cache_mb=budget), 3, reads)
    assert len(reads) == 10 + 2 * 6  # the 4 chunks that fit are read once, the other 6 every epoch
    for a, b in zip(plain, part, strict=True):
        assert np.array_equal(served(a)[0], served(b)[0])


def test_batch_buffers_are_reused_only_once_let_go():
    buffers = chunkio.BatchBuffers(keep=2)
    a = buffers.take((4, 2))
    b = buffers.take((4, 2))
    assert not np.shares_memory(a, b)
    c = buffers.take((4, 2))  # a and b are held: a new one, not kept
    assert not np.shares_memory(c, a) and not np.shares_memory(c, b)
    address = a.ctypes.data
    del a
    d = buffers.take((3, 2))
    assert d.ctypes.data == address and d.ctypes.data % chunkio.ALIGN == 0


def test_shards_split_the_chunks_between_pipelines(tmp_path):
    data = write_store(tmp_path, 150)
    slots = slots_of(np.arange(150))
    seen = []
    for index in range(3):
        options = stream.InputOptions(batch_size=10, seed=2, shard=(index, 3))
        chunks = np.unique(slots.slot // CHUNK)[index::3]
        mine = slots.take(np.isin(slots.slot // CHUNK, chunks))
        seen.append(served(run_stream(data, mine, options)[0])[0])
    assert sorted(np.concatenate(seen).tolist()) == list(range(150))
    assert not set(seen[0]) & set(seen[1])


def test_build_dataset_gives_the_same_batches_from_s3_and_local_and_names_a_corrupt_chunk(tmp_path, s3):
    import tensorflow as tf

    root, storage = s3
    local = write_store(tmp_path / "local", 100)
    remote = write_store(root, 100, storage=storage)
    slots = slots_of(np.arange(3, 100, 2))
    options = stream.InputOptions(batch_size=16, seed=7, window=2)
    a_data, b_data = (
        stream.build_dataset(ImageStore.open(local), slots, options),
        stream.build_dataset(ImageStore.open(remote), slots, options),
    )
    for _ in range(2):  # two epochs of each dataset, reshuffled the same way
        a, b = list(a_data), list(b_data)
        assert [len(x) for x, _ in a] == [16, 16, 16, 1]
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert xa.dtype == tf.uint8 and ya.dtype == tf.int32
            assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy())
        assert sorted(served([(x.numpy(), y.numpy()) for x, y in a])[0].tolist()) == slots.slot.tolist()

    (tmp_path / "local" / "images.zarr" / "images" / "c" / "4" / "0" / "0" / "0").write_bytes(b"damaged" * 30)
    named = r"chunk 4 of the image array .*images.zarr/images/c/4/0/0/0.*images/part-000004.parquet"
    with pytest.raises(CorruptChunk, match=named), stream.reading_chunks():
        list(stream.build_dataset(ImageStore.open(local), slots, options))

    # an object far bigger than its chunk on S3: refused after a bounded read, named like any damage
    remote.fs.pipe_file(remote.path("images.zarr/images/c/2/0/0/0"), b"\0" * (3 * CHUNK * SIZE * SIZE * 3 + 10_000))
    with pytest.raises(CorruptChunk, match=r"chunk 2 .*more than twice its images"), stream.reading_chunks():
        list(stream.build_dataset(ImageStore.open(remote), slots, options))


DISTRIBUTED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from test_stream import slots_of
from metdata.train import chunkio, stream
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
store = ImageStore.open(Dataset(sys.argv[1]))
data = stream.build_dataset(store, slots_of(np.arange(70)), stream.InputOptions(batch_size=20, seed=1))
out = []
for x, y in strategy.experimental_distribute_dataset(data):
    out.append([[int(v) for v in t.numpy()] for t in strategy.experimental_local_results(y)])
whole = [[int(v) for v in y.numpy()] for _, y in data]
print(json.dumps({"replicas": out, "whole": whole}))
"""


def test_a_mirrored_strategy_splits_each_batch_between_its_replicas(tmp_path):
    write_store(tmp_path, 70)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED, str(tmp_path), str(REPO / "tests")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert [[len(r) for r in step] for step in found["replicas"]] == [[10, 10]] * 3 + [[5, 5]]
    # each replica gets a half of the global batch; together they are the batch (an epoch later: reshuffled)
    assert sorted(v for step in found["replicas"] for r in step for v in r) == sorted((np.arange(70) % 3).tolist())
    assert len(found["whole"]) == 4


def test_cache_mb_is_checked_and_a_resumed_run_may_change_it():
    from metdata.cli.train import train
    from metdata.errors import UserError
    from metdata.jobs.train import TrainOptions

    for bad in ("-1", "nan", "inf"):
        result = CliRunner().invoke(train, ["--data", "d", "--target", "t", "--out", "o", "--cache-mb", bad])
        assert result.exit_code == 2 and "--cache-mb" in result.output, result.output
        with pytest.raises(UserError, match="cache_mb"):
            TrainOptions(target="t", out="o", cache_mb=float(bad))
    assert TrainOptions(target="t", out="o", cache_mb=256).cache_mb == 256
    check_settings({"epochs": 3}, {"epochs": 3, "cache_mb": 512.0}, "RUN")  # a run.json from before the option
    check_settings({"epochs": 3, "cache_mb": 0}, {"epochs": 3, "cache_mb": 512.0}, "RUN")
    for bad in (
        {"cache_mb": float("nan")},
        {"cache_mb": -1},
        {"window": 0},
        {"parallel_reads": 0},
        {"batch_size": 0},
        {"first_epoch": -1},
    ):
        with pytest.raises(ValueError, match="whole numbers from 1"):
            stream.InputOptions(**bad)
