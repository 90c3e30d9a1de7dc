"""Which chunk size (images per Zarr chunk) suits the image array on local disk and on S3.

The array is what the images stage writes: ``--images`` x size x size x 3 uint8, Zarr 3's
default compression (zstd), one image per slot. Its content is real-looking: web-large JPEGs
drawn by the emulator's synthetic catalog, decoded and resized as the images stage does
(``metdata.core.imaging``), since random noise does not compress like pictures. For each
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

With ``--codecs`` it measures the chunk codec instead, at the default chunk size: for zstd
(Zarr 3's default), Blosc-LZ4 and Blosc-LZ4HC at levels 1 and 5 (byte shuffle; a no-op on uint8,
whose items are single bytes), the bytes per image, the encode and decode rates of one thread in
images per CPU second (numcodecs on the chunk objects, as ``metdata.train.stream`` decodes them) and a
whole read from S3 (moto), then the images/s each would feed a node with ``--node-cores`` cores
and ``--node-gbps`` of network: min(cores x decode rate, network / bytes per image). The
recommendation is the codec that feeds the most among those that encode within
``--max-encode-ms`` per image (the images stage pays it on every chunk write: issue 24) and
decode at least ``--min-decode-share`` as fast as the fastest (training's reader pays it).

    python benchmarks/zarr_chunks.py [--images 2048] [--chunks 8 16 32 64 128 256] \\
        [--request-ms 30] [--s3-max-concurrency N]
    python benchmarks/zarr_chunks.py --codecs [--node-cores 4] [--node-gbps 10]
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

from metdata.core import imaging
from metdata.emulator.catalog import Synthetic
from metdata.images.images import ImageOptions

MB = 1e6
BUCKET = "metdata-bench"


def real_images(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` distinct public-domain web-large images, decoded and squashed to size x size."""
    catalog = Synthetic(min(899_999, max(1000, 5 * n)), seed, "dense")
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


def codecs() -> dict:
    """The candidate chunk codecs (None: Zarr's default, zstd)."""
    from zarr.codecs import BloscCodec

    return {
        "zstd (Zarr default)": None,
        "blosc-lz4 c5": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        "blosc-lz4hc c5 (before issue 24)": BloscCodec(cname="lz4hc", clevel=5, shuffle="shuffle"),
        "blosc-lz4hc c1 (metdata's)": BloscCodec(cname="lz4hc", clevel=1, shuffle="shuffle"),
    }


def one_thread_rate(work, images: int, repeats: int = 3, clock=time.perf_counter) -> float:
    """Images per second of ``work()`` on ``clock`` (wall, or e.g. ``time.process_time`` for CPU
    seconds); the best of ``repeats``, the least disturbed by other processes."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        work()
        best = min(best, clock() - start)
    return images / best


def measure_codec(name: str, codec, data: np.ndarray, chunk: int, folder: Path, s3_url: str, options: dict) -> dict:
    """Bytes, one-thread encode and decode rates, and a whole S3 read of ``data`` stored with ``codec``."""
    import numcodecs

    numcodecs.blosc.use_threads = False  # one thread, as in the stream's reading threads
    n = len(data)
    extra = {} if codec is None else {"compressors": [codec]}
    shape = (chunk, *data.shape[1:])
    array = zarr.create_array(zarr.storage.LocalStore(folder), shape=data.shape, chunks=shape, dtype="uint8", **extra)
    blocks = [data[s : s + chunk] for s in range(0, n - chunk + 1, chunk)]  # whole chunks only
    stored = array.metadata.codecs[-1]  # what Zarr writes, as numcodecs' codec of the same settings
    if codec is None:
        coder = numcodecs.Zstd(level=stored.level)
    else:
        coder = numcodecs.Blosc(cname=stored.cname.value, clevel=stored.clevel, shuffle=numcodecs.Blosc.SHUFFLE)
    cpu = time.process_time  # CPU seconds: the rates hold on a machine shared with other work
    encode = one_thread_rate(lambda: [coder.encode(b) for b in blocks], len(blocks) * chunk, clock=cpu)
    array[:] = data
    files = sorted(f for f in (folder / "c").rglob("*") if f.is_file())
    raw = [f.read_bytes() for f in files][: len(blocks)]
    out = np.empty(shape, np.uint8)
    decode = one_thread_rate(lambda: [coder.decode(r, out=out) for r in raw], len(raw) * chunk, clock=cpu)
    zarr_read = one_thread_rate(lambda: [array[s : s + chunk] for s in range(0, n, chunk)], n, clock=cpu)
    remote = zarr.storage.FsspecStore.from_url(s3_url, storage_options=options)
    zarr.create_array(remote, shape=data.shape, chunks=shape, dtype="uint8", **extra)[:] = data
    remote_array = zarr.open_array(remote, mode="r")
    s3_read = one_thread_rate(lambda: [remote_array[s : s + chunk] for s in range(0, n, chunk)], n, repeats=1)
    nbytes = sum(f.stat().st_size for f in files)
    return {
        "codec": name,
        "bytes_per_image": nbytes / n,
        "ratio": nbytes / data.nbytes,
        "encode": encode,
        "decode": decode,
        "zarr_read": zarr_read,
        "s3_read": s3_read,
    }


def codec_report(rows: list[dict], cores: int, gbps: float, max_encode_ms: float, min_decode_share: float) -> None:
    """The codec table, each one's feed of the reference node, and the recommendation."""
    print(
        f"  {'codec':<34} {'bytes/image':>11} {'x raw':>6} {'encode ms':>9} {'decode/s':>9} {'zarr read/s':>11}"
        f" {'S3 read/s':>9} {f'node {cores}c/{gbps:g}Gb/s':>16} {'bound by':>9}"
    )
    for r in rows:
        cpu, net = cores * r["decode"], gbps * 1e9 / 8 / r["bytes_per_image"]
        r["node"], r["bound"] = min(cpu, net), ("decode" if cpu < net else "network")
        print(
            f"  {r['codec']:<34} {r['bytes_per_image']:>11,.0f} {r['ratio']:>6.3f} {1000 / r['encode']:>9.3f}"
            f" {r['decode']:>9,.0f} {r['zarr_read']:>11,.0f} {r['s3_read']:>9,.0f} {r['node']:>16,.0f} {r['bound']:>9}"
        )
    fastest = max(r["decode"] for r in rows)
    fit = [r for r in rows if 1000 / r["encode"] <= max_encode_ms and r["decode"] >= min_decode_share * fastest]
    best = max(fit or rows, key=lambda r: (r["node"], -r["bytes_per_image"]))
    print(
        f"  eligible (encode <= {max_encode_ms:g} ms/image, decode >= x{min_decode_share:g} the fastest): "
        + (", ".join(r["codec"] for r in fit) or "none: the recommendation ignores the bounds")
    )
    base = rows[0]
    print(
        f"  recommendation: {best['codec']}: feeds x{best['node'] / base['node']:.2f} the images/s of {base['codec']} "
        f"to a node with {cores} cores per {gbps:g} Gb/s, decoding x{best['decode'] / base['decode']:.2f} as fast "
        f"from x{best['bytes_per_image'] / base['bytes_per_image']:.2f} the bytes (encoding at "
        f"x{best['encode'] / base['encode']:.2f}: paid once, when the images stage writes the chunk)"
    )


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
    parser.add_argument("--codecs", action="store_true", help="measure the chunk codecs instead of chunk sizes")
    parser.add_argument("--node-cores", type=int, default=4, help="--codecs: input cores of the reference node")
    parser.add_argument("--node-gbps", type=float, default=10.0, help="--codecs: its network, Gbit/s")
    parser.add_argument("--max-encode-ms", type=float, default=0.5, help="--codecs: most encode CPU ms per image")
    parser.add_argument("--min-decode-share", type=float, default=0.8, help="--codecs: of the fastest decode")
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
    if args.codecs:
        try:
            with tempfile.TemporaryDirectory(prefix="metdata-codecs-") as tmp:
                rows = [
                    measure_codec(
                        name,
                        codec,
                        data,
                        ImageOptions.chunk,
                        Path(tmp) / f"{i}.zarr",
                        f"s3://{BUCKET}/{i}.zarr",
                        options,
                    )
                    for i, (name, codec) in enumerate(codecs().items())
                ]
        finally:
            server.stop()
        print(
            f"Zarr chunk codec: {len(data)} images of {args.size} x {args.size} x 3 uint8 in chunks of "
            f"{ImageOptions.chunk}; encode, decode and Zarr read in images per CPU second of one thread (best of 3); "
            "S3 read: images/s (wall) through moto in this process"
        )
        codec_report(rows, args.node_cores, args.node_gbps, args.max_encode_ms, args.min_decode_share)
        return
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
