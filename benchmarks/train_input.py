"""Is the training input stream the bottleneck? Zarr (local disk, S3 through moto) vs in memory.

Writes N real-looking 150x150 images (drawn by the emulator's synthetic catalog, decoded and
resized as the images stage does) into a Zarr store laid out like ``images.zarr`` (chunks of
64), then times one epoch of ``metdata.training.build_dataset`` (chunk reads interleaved,
shuffled, batched by 64) against the baseline of the same images held in a NumPy array and fed
by ``tf.data.Dataset.from_tensor_slices`` with the same shuffle and batch. Each measurement runs
in its own process, so its peak memory (VmHWM) is its own: the stream's must not grow with N,
the baseline's does. TensorFlow uses both cores here; images/s per core is the figure to size a
GPU node with (a GPU consuming K images/s needs about K / that many cores of input).

    python benchmarks/train_input.py [--small 2000] [--large 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import peak_rss_bytes
from zarr_chunks import real_images

from metdata.dataset import Dataset
from metdata.training import InputOptions, Slots

SIZE, CHUNK, BATCH = 150, 64, 64


def write_store(root: Path, n: int, storage: dict | None = None, url: str | None = None) -> None:
    """An ``images.zarr`` of ``n`` images: a pool of real images repeated (the content only
    matters for compression), ``object_id`` = slot, every slot valid."""
    import zarr

    dataset = Dataset(url or str(root), storage or {})
    group = zarr.open_group(store=dataset.zarr_store("images.zarr"), mode="w")
    images = group.create_array("images", shape=(n, SIZE, SIZE, 3), chunks=(CHUNK, SIZE, SIZE, 3), dtype="uint8")
    group.create_array("object_id", shape=(n,), chunks=(CHUNK,), dtype="int64")[:] = np.arange(n)
    group.create_array("valid", shape=(n,), chunks=(CHUNK,), dtype="bool")[:] = True
    pool = real_images(512, SIZE, seed=0)
    for start in range(0, n, 1024):
        stop = min(n, start + 1024)
        images[start:stop] = pool[np.arange(start, stop) % len(pool)]


def slots(n: int) -> Slots:
    return Slots(
        slot=np.arange(n),
        object_id=np.arange(n),
        label=(np.arange(n) % 4).astype(np.int32),
        sha256=np.array([""] * n),
        classes=("America", "China", "India", "Japan"),
        size=SIZE,
        resize="squash",
        chunk=CHUNK,
    )


def child(source: str, n: int, root: str, storage: dict) -> dict:
    """One epoch from ``source`` (memory, local or s3); images/s and this process's peak memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from metdata.training import build_dataset

    dataset = Dataset(root, storage)
    if source == "memory":
        import zarr

        group = zarr.open_group(store=dataset.zarr_store("images.zarr"), mode="r")
        pixels = group["images"][:n]  # the whole array in memory, as the blog held it
        labels = (np.arange(n) % 4).astype(np.int32)
        data = tf.data.Dataset.from_tensor_slices((pixels, labels)).shuffle(2048, seed=0).batch(BATCH)
        data = data.prefetch(tf.data.AUTOTUNE)
    else:
        data = build_dataset(dataset, slots(n), InputOptions(batch_size=BATCH, seed=0))
    seen, start = 0, time.perf_counter()
    for images, _ in data:
        seen += int(images.shape[0])
    elapsed = time.perf_counter() - start
    return {"images": seen, "images_per_s": seen / elapsed, "peak_mb": peak_rss_bytes() / 2**20}


def run_child(source: str, n: int, root: str, storage: dict) -> dict:
    args = [
        sys.executable,
        __file__,
        "--child",
        source,
        "--n",
        str(n),
        "--root",
        root,
        "--storage",
        json.dumps(storage),
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--child", choices=["memory", "local", "s3"])
    parser.add_argument("--n", type=int)
    parser.add_argument("--root")
    parser.add_argument("--storage", default="{}")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.root, json.loads(args.storage))))
        return

    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint}).mkdir("bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            local = Path(tmp) / f"n{n}"
            write_store(local, n)
            base = run_child("memory", n, str(local), {})
            rows.append((n, "in memory: from_tensor_slices (baseline)", base, base))
            rows.append((n, "metdata: Zarr stream, local disk", run_child("local", n, str(local), {}), base))
            if n == args.small:  # moto is an in-process Python server: the S3 figure is its ceiling, not S3's
                write_store(local, n, storage, url=f"s3://bench/n{n}")
                rows.append(
                    (n, "metdata: Zarr stream, S3 (moto)", run_child("s3", n, f"s3://bench/n{n}", storage), base)
                )
    server.stop()
    cores = os.cpu_count() or 1
    print(f"Training input, one epoch, {SIZE}x{SIZE} images, batches of {BATCH}, chunks of {CHUNK}, {cores} cores")
    print(f"  {'images':>7} {'source':<42} {'images/s':>9} {'x base':>7} {'per core':>9} {'peak MB':>8}")
    for n, name, r, b in rows:
        print(
            f"  {n:>7} {name:<42} {r['images_per_s']:>9.0f} x{r['images_per_s'] / b['images_per_s']:>5.2f}"
            f" {r['images_per_s'] / cores:>9.0f} {r['peak_mb']:>8.0f}"
        )
    print("  peak MB: the measuring process's own high-water mark (VmHWM); the stream's is bounded by its buffers")


if __name__ == "__main__":
    main()
