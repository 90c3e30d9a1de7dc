"""Is the training input stream the bottleneck? Zarr (local disk, S3 through moto) vs in memory, vs decoding.

Writes N real-looking 150x150 images (drawn by the emulator's synthetic catalog, decoded and
resized as the images stage does) into a Zarr store laid out like ``images.zarr`` (chunks of
64, the images stage's codec unless ``--codec lz4hc`` or ``zstd``: the codecs of stores built before), then
times an epoch of ``metdata.train.stream.build_dataset`` (shuffled, batches of 64) against the
baseline of the same images held in a NumPy array and fed by ``tf.data.Dataset.from_tensor_slices``
with a shuffle buffer and the same batch. Each source runs ``--epochs`` epochs in its own process
and its best epoch counts (the first of the stream's cache run fills the cache), so each peak
memory (VmHWM) is its own: the stream's must not grow with N, the baseline's does.

The decode limit: one thread decoding each chunk object of the store (numcodecs, the chunk's
codec, into a reused buffer), in images per CPU second; Zarr's own read of the same chunks is
printed beside it. "cpu/img" is each process's CPU time per image over its epochs: unlike
wall-clock rates it holds on a machine shared with other work. "x decode" is the stream's images
per CPU second (its images/s per core when it has the cores) over the decode limit's: 1.0 would be
a stream that does nothing but decode. "x base cpu" compares CPU per image with the baseline's.

    python benchmarks/train_input.py [--small 2000] [--large 20000] [--codec lz4hc-1|lz4hc|zstd] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import peak_rss_bytes
from zarr_chunks import codecs, one_thread_rate, real_images

from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.train.stream import InputOptions, build_dataset
from metdata.train.training import Slots

SIZE, CHUNK, BATCH = 150, 64, 64
CODECS = {  # the images stage's, and those before it
    "lz4hc-1": "blosc-lz4hc c1 (metdata's)",
    "lz4hc": "blosc-lz4hc c5 (before issue 24)",
    "zstd": "zstd (Zarr default)",
}


def write_store(root: Path, n: int, codec: str, storage: dict | None = None, url: str | None = None) -> None:
    """An ``images.zarr`` of ``n`` images: a pool of real images repeated (the content only
    matters for compression), ``object_id`` = slot, every slot valid."""
    import zarr

    dataset = Dataset(url or str(root), storage or {})
    group = zarr.open_group(store=dataset.zarr_store("images.zarr"), mode="w")
    compressor = codecs()[CODECS[codec]]
    extra = {} if compressor is None else {"compressors": [compressor]}
    images = group.create_array(
        "images", shape=(n, SIZE, SIZE, 3), chunks=(CHUNK, SIZE, SIZE, 3), dtype="uint8", fill_value=0, **extra
    )
    group.create_array("object_id", shape=(n,), chunks=(CHUNK,), dtype="int64")[:] = np.arange(n)
    group.create_array("valid", shape=(n,), chunks=(CHUNK,), dtype="bool")[:] = True
    pool = real_images(512, SIZE, seed=0)
    for start in range(0, n, 1024):
        stop = min(n, start + 1024)
        images[start:stop] = pool[np.arange(start, stop) % len(pool)]


def decode_limit(root: Path, n: int) -> tuple[float, float]:
    """Images per CPU second of one thread decoding the store's whole chunks (numcodecs, into a
    reused buffer), and of Zarr's own read of them (called from one thread)."""
    import numcodecs
    import zarr

    numcodecs.blosc.use_threads = False  # as in the stream's reading threads
    images = zarr.open_group(str(root / "images.zarr"), mode="r")["images"]
    stored = images.metadata.codecs[-1]
    coder = numcodecs.Blosc() if isinstance(stored, zarr.codecs.BloscCodec) else numcodecs.Zstd()
    whole = n // CHUNK
    raw = [(root / "images.zarr" / "images" / "c" / str(c) / "0" / "0" / "0").read_bytes() for c in range(whole)]
    out = np.empty((CHUNK, SIZE, SIZE, 3), np.uint8)
    decode = one_thread_rate(lambda: [coder.decode(r, out=out) for r in raw], whole * CHUNK, clock=time.process_time)
    read = one_thread_rate(
        lambda: [images[c * CHUNK : (c + 1) * CHUNK] for c in range(whole)], whole * CHUNK, clock=time.process_time
    )
    return decode, read


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


def child(source: str, n: int, root: str, storage: dict, epochs: int) -> dict:
    """``epochs`` epochs from ``source`` (memory, local, cache or s3): the best epoch's images/s,
    the process's CPU seconds per image over all epochs, and its peak memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    dataset = Dataset(root, storage)
    if source in ("numpy", "s3-get"):
        return bare(source, n, dataset, epochs)
    if source == "memory":
        import zarr

        group = zarr.open_group(store=dataset.zarr_store("images.zarr"), mode="r")
        pixels = group["images"][:n]  # the whole array in memory, as the blog held it
        labels = (np.arange(n) % 4).astype(np.int32)
        data = tf.data.Dataset.from_tensor_slices((pixels, labels)).shuffle(2048, seed=0).batch(BATCH)
        data = data.prefetch(tf.data.AUTOTUNE)
    else:
        extra = {"cache_mb": 2 * n * SIZE * SIZE * 3 / 2**20} if source == "cache" else {}
        data = build_dataset(ImageStore.open(dataset), slots(n), InputOptions(batch_size=BATCH, seed=0, **extra))
    return timed(lambda: sum(int(images.shape[0]) for images, *_ in data), epochs)


def timed(epoch, epochs: int) -> dict:
    """Run ``epoch()`` (which returns the images it served) ``epochs`` times: the best epoch's
    images/s, the process's CPU microseconds per image over all epochs, its peak memory."""
    best, seen, cpu = 0.0, 0, time.process_time()
    for _ in range(epochs):
        start = time.perf_counter()
        count = epoch()
        best = max(best, count / (time.perf_counter() - start))
        seen += count
    cpu = time.process_time() - cpu
    return {
        "images": seen // epochs,
        "images_per_s": best,
        "cpu_us": 1e6 * cpu / seen,
        "peak_mb": peak_rss_bytes() / 2**20,
    }


def bare(source: str, n: int, dataset: Dataset, epochs: int) -> dict:
    """Without TensorFlow: the stream's own batches as NumPy arrays ("numpy"), or the store's
    chunk objects fetched from S3 by 16 threads and not decoded ("s3-get": the storage's ceiling)."""
    from concurrent.futures import ThreadPoolExecutor

    from metdata.train.chunkio import chunk_reader
    from metdata.train.stream import Stream

    store = ImageStore.open(dataset)
    if source == "numpy":
        stream = Stream(chunk_reader(store), slots(n), InputOptions(batch_size=BATCH), None)
        epoch = lambda: sum(len(batch[0]) for batch in stream())  # noqa: E731
    else:
        keys = [dataset.path(store.chunk_path(c)) for c in range(-(-n // CHUNK))]
        pool = ThreadPoolExecutor(16)
        epoch = lambda: CHUNK * sum(1 for _ in pool.map(lambda k: dataset.fs.cat_file(k, max_concurrency=1), keys))  # noqa: E731
    return timed(lambda: min(n, epoch()), epochs)


def run_child(source: str, n: int, root: str, storage: dict, epochs: int) -> dict:
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
    args += ["--epochs", str(epochs)]
    result = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--codec", choices=sorted(CODECS), default="lz4hc-1", help="the store's chunk codec")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per source; the best one counts")
    parser.add_argument("--child", choices=["memory", "local", "cache", "s3", "numpy", "s3-get"])
    parser.add_argument("--n", type=int)
    parser.add_argument("--root")
    parser.add_argument("--storage", default="{}")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.root, json.loads(args.storage), args.epochs)))
        return

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint}).mkdir("bench")
    cache = "cache_mb" in InputOptions.__dataclass_fields__  # absent before the stream had a cache
    rows, limits, peaks = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            local = Path(tmp) / f"n{n}"
            write_store(local, n, args.codec)
            limits[n] = decode_limit(local, n)
            base = run_child("memory", n, str(local), {}, args.epochs)
            rows.append((n, "in memory: from_tensor_slices (baseline)", base, base))
            rows.append(
                (n, "metdata: Zarr stream, local disk", run_child("local", n, str(local), {}, args.epochs), base)
            )
            peaks[n] = rows[-1][2]["peak_mb"]
            bare_rate = run_child("numpy", n, str(local), {}, args.epochs)
            rows.append((n, "the stream alone: NumPy batches, no tf.data", bare_rate, base))
            if n == args.small and cache:
                cached = run_child("cache", n, str(local), {}, args.epochs + 1)  # the first epoch fills the cache
                rows.append((n, "metdata: Zarr stream, local, --cache-mb", cached, base))
            if n == args.small:  # moto is an in-process Python server: the S3 figure is its ceiling, not S3's
                write_store(local, n, args.codec, storage, url=f"s3://bench/n{n}")
                remote = run_child("s3", n, f"s3://bench/n{n}", storage, args.epochs)
                rows.append((n, "metdata: Zarr stream, S3 (moto)", remote, base))
                ceiling = run_child("s3-get", n, f"s3://bench/n{n}", storage, args.epochs)
                rows.append((n, "moto's ceiling: the chunks' GETs, no decode", ceiling, base))
    server.stop()
    cores = os.cpu_count() or 1
    print(
        f"Training input, best of {args.epochs} epochs, {SIZE}x{SIZE} images, batches of {BATCH}, chunks of {CHUNK} "
        f"({CODECS[args.codec]}), {cores} cores"
    )
    for n, (decode, read) in limits.items():
        print(
            f"  decode limit at {n}: one thread decodes {decode:,.0f} images per CPU second "
            f"({1e6 / decode:.0f}us/img; Zarr's own read: {read:,.0f})"
        )
    print(
        f"  {'images':>7} {'source':<42} {'images/s':>9} {'x base':>7} {'per core':>9} {'cpu/img':>8}"
        f" {'x base cpu':>10} {'x decode':>8} {'peak MB':>8}"
    )
    for n, name, r, b in rows:
        print(
            f"  {n:>7} {name:<42} {r['images_per_s']:>9,.0f} x{r['images_per_s'] / b['images_per_s']:>5.2f}"
            f" {r['images_per_s'] / cores:>9,.0f} {r['cpu_us']:>6.0f}us x{b['cpu_us'] / r['cpu_us']:>8.2f}"
            f" x{1e6 / r['cpu_us'] / limits[n][0]:>6.2f} {r['peak_mb']:>8.0f}"
        )
    small, large = peaks[args.small], peaks[args.large]
    print(
        f"  the stream's peak memory from {args.small} to {args.large} images: {small:.0f} -> {large:.0f} MB "
        f"({100 * (large / small - 1):+.1f} %); peak MB is each process's own high-water mark (VmHWM)"
    )


if __name__ == "__main__":
    main()
