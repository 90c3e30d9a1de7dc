"""Which chunk size (images per Zarr chunk) suits the image array on local disk and on S3.

The array is what the images stage writes: ``--images`` x size x size x 3 uint8, Zarr 3's
default compression (zstd), one image per slot. Its content is real-looking: web-large JPEGs
drawn by the emulator's synthetic catalog, decoded and resized as the images stage does
(``metdata.imaging``), since random noise does not compress like pictures. For each
``--chunks`` size the array is written to (a) a local temporary folder (``LocalStore``) and
(b) S3, moto's server in this process (``FsspecStore`` over s3fs), and measured:

- write: the chunks written one after another, as the chunk tasks each write theirs;
- full read: chunk by chunk in order, as a training input pipeline does;
- random reads: ``--random-reads`` single images at random slots (each reads its whole chunk);
- bytes per chunk object (``--min-object-mb``, about 1 MB, is where S3 requests pay off).

Moto answers in well under a millisecond, but a real S3 request costs 10-100 ms. The S3
requests are counted (botocore events on s3fs's client: every HEAD, GET and PUT), and each S3
time is also given as an estimate at ``--request-ms`` per request: measured time + requests x
``--request-ms``. Figures carry their ratio to the default chunk size (``ImageOptions.chunk``)
measured in the same run. Ends with a one-line recommendation: the smallest chunk whose objects
reach ``--min-object-mb``, with what its random reads cost.

    python benchmarks/zarr_chunks.py [--images 2048] [--chunks 8 16 32 64 128 256] \\
        [--request-ms 30] [--s3-max-concurrency N]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import s3fs
import zarr
import zarr.storage
from moto.server import ThreadedMotoServer

from metdata import imaging
from metdata.emulator.catalog import Synthetic
from metdata.images import ImageOptions

MB = 1e6
BUCKET = "metdata-bench"


def real_images(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` distinct public-domain web-large images, decoded and squashed to size x size."""
    catalog = Synthetic(min(899_999, max(1000, 5 * n)), seed)
    out = np.zeros((n, size, size, 3), np.uint8)
    i = 0
    for object_id in catalog.ids.tolist():
        url = catalog.record(object_id)["primaryImageSmall"]
        if not url:
            continue
        rgb, _, _ = imaging.decode(catalog.image(urlsplit(url).path).body, size)
        out[i] = imaging.resize(rgb, size, "squash")
        i += 1
        if i == n:
            return out
    raise RuntimeError(f"the catalog holds fewer than {n} images")


class RequestCounter:
    """Counts the S3 requests an s3fs filesystem sends (HeadObject, GetObject, PutObject, ...)."""

    def __init__(self, fs: s3fs.S3FileSystem) -> None:
        self.counts: Counter[str] = Counter()
        fs.s3.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **_: object) -> None:
        self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        """The counts since the last call."""
        counts, self.counts = self.counts, Counter()
        return counts


def measure(store, data: np.ndarray, chunk: int, picks: np.ndarray, size_of, counter_for=None) -> dict:
    """Write, read in order, read at random; time each, count requests if ``counter_for``."""
    n = len(data)
    array = zarr.create_array(store, shape=data.shape, chunks=(chunk, *data.shape[1:]), dtype="uint8", fill_value=0)
    counter = counter_for(store) if counter_for else None
    start = time.perf_counter()
    for s in range(0, n, chunk):
        array[s : s + chunk] = data[s : s + chunk]
    write = time.perf_counter() - start
    writes = counter.take() if counter else Counter()

    array = zarr.open_array(store, mode="r")
    if counter:
        counter.take()  # opening reads the metadata once; not part of either read
    start = time.perf_counter()
    for s in range(0, n, chunk):
        block = array[s : s + chunk]
    full = time.perf_counter() - start
    full_reads = counter.take() if counter else Counter()
    if not np.array_equal(block, data[n - len(block) :]):
        raise RuntimeError(f"chunk {chunk}: the array read back differs from what was written")

    start = time.perf_counter()
    for i in picks.tolist():
        array[i]
    random = time.perf_counter() - start
    random_reads = counter.take() if counter else Counter()
    objects = size_of(n // chunk + (n % chunk > 0))
    return {
        "chunk": chunk,
        "objects": len(objects),
        "object_bytes": float(np.mean(objects)),
        "total_bytes": int(np.sum(objects)),
        "write": write,
        "full": full,
        "random": random / len(picks),
        "write_requests": sum(writes.values()),
        "full_requests": sum(full_reads.values()),
        "random_requests": sum(random_reads.values()) / len(picks),
        "read_kinds": dict(full_reads),
    }


def local_sizes(folder: Path):
    def sizes(expected: int) -> list[int]:
        found = [f.stat().st_size for f in (folder / "c").rglob("*") if f.is_file()]
        if len(found) != expected:
            raise RuntimeError(f"{folder}: {len(found)} chunk files, expected {expected}")
        return found

    return sizes


def s3_sizes(fs: s3fs.S3FileSystem, prefix: str):
    def sizes(expected: int) -> list[int]:
        fs.invalidate_cache()
        found = [v for k, v in fs.du(f"{prefix}/c", total=False).items()]
        if len(found) != expected:
            raise RuntimeError(f"{prefix}: {len(found)} chunk objects, expected {expected}")
        return found

    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="images in the array (N)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256], help="images per chunk")
    parser.add_argument("--size", type=int, default=150, help="square side of each image")
    parser.add_argument("--random-reads", type=int, default=100)
    parser.add_argument("--request-ms", type=float, default=30.0, help="assumed latency of one real S3 request")
    parser.add_argument("--min-object-mb", type=float, default=1.0, help="the object size S3 wants at least")
    parser.add_argument(
        "--s3-max-concurrency",
        type=int,
        help="s3fs max_concurrency (default: s3fs's, 10, with which every whole-object read is a HEAD + a GET)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    baseline_chunk = ImageOptions.chunk if ImageOptions.chunk in args.chunks else args.chunks[0]

    started = time.perf_counter()
    data = real_images(args.images, args.size, args.seed)
    logging.info("%d images drawn, decoded and resized in %.1f s", len(data), time.perf_counter() - started)
    picks = np.random.default_rng(args.seed).integers(0, len(data), args.random_reads)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    if args.s3_max_concurrency:
        options["max_concurrency"] = args.s3_max_concurrency
    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
    fs.mkdir(BUCKET)
    local, s3 = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="metdata-chunks-") as tmp:
            for chunk in args.chunks:
                folder = Path(tmp) / f"c{chunk}.zarr"
                local.append(measure(zarr.storage.LocalStore(folder), data, chunk, picks, local_sizes(folder)))
                prefix = f"{BUCKET}/c{chunk}.zarr"
                store = zarr.storage.FsspecStore.from_url(f"s3://{prefix}", storage_options=options)
                s3.append(measure(store, data, chunk, picks, s3_sizes(fs, prefix), lambda st: RequestCounter(st.fs)))
                fs.rm(prefix, recursive=True)  # moto keeps objects in memory
                logging.info("chunk %d done", chunk)
    finally:
        server.stop()

    lat = args.request_ms / 1000
    raw = args.size * args.size * 3
    print(
        f"Zarr chunk size: {len(data)} images of {args.size} x {args.size} x 3 uint8 "
        f"({len(data) * raw / MB:.0f} MB raw), "
        f"Zarr {zarr.__version__} default compression; {args.random_reads} random single-image reads; "
        f"ratios to chunk {baseline_chunk} (the images stage's default)"
    )
    base = next(r for r in local if r["chunk"] == baseline_chunk)
    print("  local disk (LocalStore):")
    print(
        f"  {'chunk':>5} {'objects':>7} {'MB/object':>9} {'x raw':>6} {'write s':>7} {'x':>6} {'full read s':>11}"
        f" {'x':>6} {'random ms/image':>15} {'x':>6}"
    )
    for r in local:
        ratio = r["total_bytes"] / (len(data) * raw)
        print(
            f"  {r['chunk']:5d} {r['objects']:7d} {r['object_bytes'] / MB:9.3f} {ratio:6.2f}"
            f" {r['write']:7.2f} x{r['write'] / base['write']:5.2f} {r['full']:11.2f} x{r['full'] / base['full']:5.2f}"
            f" {1000 * r['random']:15.2f} x{r['random'] / base['random']:5.2f}"
        )
    for r in s3:  # measured + requests x the assumed latency of each
        for key in ("write", "full", "random"):
            r[f"{key}_at"] = r[key] + r[f"{key}_requests"] * lat
    base = next(r for r in s3 if r["chunk"] == baseline_chunk)
    print(
        f"  S3 (moto in this process, s3fs max_concurrency {args.s3_max_concurrency or 'default'}); "
        f"'@{args.request_ms:g}ms' = measured + requests x {args.request_ms:g} ms:"
    )
    print(
        f"  {'chunk':>5} {'MB/object':>9} {'write s':>7} {'PUTs':>5} {f'@{args.request_ms:g}ms':>7} {'x':>6}"
        f" {'full read s':>11} {'requests':>8} {f'@{args.request_ms:g}ms':>7} {'x':>6}"
        f" {'random ms/image':>15} {'req/image':>9} {f'@{args.request_ms:g}ms':>7} {'x':>6}"
    )
    for r in s3:
        w, f, q = r["write_at"], r["full_at"], r["random_at"]
        bw, bf, bq = base["write_at"], base["full_at"], base["random_at"]
        print(
            f"  {r['chunk']:5d} {r['object_bytes'] / MB:9.3f} {r['write']:7.2f} {r['write_requests']:5d} {w:7.2f}"
            f" x{w / bw:5.2f} {r['full']:11.2f} {r['full_requests']:8d} {f:7.2f} x{f / bf:5.2f}"
            f" {1000 * r['random']:15.2f} {r['random_requests']:9.1f} {1000 * q:7.1f} x{q / bq:5.2f}"
        )
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(s3[0]["read_kinds"].items()))
    print(
        f"  requests for a full read at chunk {s3[0]['chunk']} ({s3[0]['objects']} objects): {kinds}. The estimates "
        "count latency only;\n  at ~100 MB/s per connection, transfer adds ~10 ms per MB of object to each read."
    )

    big = [r for r in s3 if r["object_bytes"] >= args.min_object_mb * MB]
    if not big:
        print(f"  recommendation: none of these chunk sizes reaches {args.min_object_mb:g} MB objects; try larger ones")
        return
    pick, small = big[0], s3[0]
    print(
        f"  recommendation: chunk {pick['chunk']}, the smallest whose S3 objects reach {args.min_object_mb:g} MB "
        f"({pick['object_bytes'] / MB:.2f} MB): a full read at {args.request_ms:g} ms/request takes "
        f"{pick['full_at']:.1f} s (chunk {small['chunk']}: {small['full_at']:.1f} s) while a random image costs "
        f"{1000 * pick['random_at']:.0f} ms ({1000 * small['random_at']:.0f} ms at chunk {small['chunk']})"
    )


if __name__ == "__main__":
    main()
