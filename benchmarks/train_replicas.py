"""Training images/s with 1 vs 2 replicas on the CPU, and training's peak memory vs dataset size.

The CPU is split into 2 logical devices before TensorFlow starts (each measurement runs in its
own process), so ``MirroredStrategy`` has 2 replicas without a GPU: this checks the distributed
path end to end and what it costs on CPU, not GPU speed. The data is a Zarr store of real-looking
images (see ``train_input.py``) streamed by ``metdata.train.stream.build_dataset``; the model is
``seed-cnn``; images/s is measured over the second epoch (the first includes tracing). The 1
replica run at the small size is the baseline.

    python benchmarks/train_replicas.py [--size 32] [--small 2000] [--large 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from measure import epoch_clock, peak_rss_bytes
from zarr_chunks import real_images

from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.train.stream import InputOptions
from metdata.train.training import Slots

CHUNK, BATCH = 64, 64


def write_store(root: str, n: int, size: int) -> None:
    """An ``images.zarr`` of ``n`` images (a pool of real images, repeated), every slot valid."""
    import zarr

    group = zarr.open_group(store=Dataset(root).zarr_store("images.zarr"), mode="w")
    images = group.create_array("images", shape=(n, size, size, 3), chunks=(CHUNK, size, size, 3), dtype="uint8")
    pool = real_images(256, size, seed=0)
    images[:] = pool[np.arange(n) % len(pool)]


def child(replicas: int, n: int, size: int, root: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    from metdata.train.models import ModelOptions, build_model
    from metdata.train.stream import build_dataset

    slots = Slots(
        np.arange(n),
        np.arange(n),
        (np.arange(n) % 4).astype(np.int32),
        np.array([""] * n),
        ("America", "China", "India", "Japan"),
        size,
        "squash",
        CHUNK,
    )
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:replicas]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = build_model("seed-cnn", ModelOptions(size, 4, augment=True))
    data = build_dataset(ImageStore.open(Dataset(root)), slots, InputOptions(batch_size=BATCH * replicas, seed=0))
    clock = epoch_clock()
    model.fit(data, epochs=2, verbose=0, callbacks=[clock])
    return {"images_per_s": n / clock.seconds[1], "peak_mb": peak_rss_bytes() / 2**20}


def run_child(replicas: int, n: int, size: int, root: str) -> dict:
    args = [sys.executable, __file__, "--child", str(replicas), "--n", str(n), "--size", str(size), "--root", root]
    result = subprocess.run(args, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--child", type=int)
    parser.add_argument("--n", type=int)
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.size, args.root)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            root = f"{tmp}/n{n}"
            write_store(root, n, args.size)
            for replicas in (1, 2) if n == args.small else (1,):
                rows.append((n, replicas, run_child(replicas, n, args.size, root)))
    base = rows[0][2]
    print(f"Training seed-cnn on {args.size}x{args.size} images, per-replica batch {BATCH}, 2 logical CPU devices")
    print(f"  {'images':>7} {'replicas':>8} {'images/s':>9} {'x base':>7} {'peak MB':>8} {'x base':>7}")
    for n, replicas, r in rows:
        print(
            f"  {n:>7} {replicas:>8} {r['images_per_s']:>9.0f} x{r['images_per_s'] / base['images_per_s']:>5.2f}"
            f" {r['peak_mb']:>8.0f} x{r['peak_mb'] / base['peak_mb']:>5.2f}"
        )
    print("  two logical replicas share the same 2 cores: on CPU this measures the distributed path's overhead")


if __name__ == "__main__":
    main()
