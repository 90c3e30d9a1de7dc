"""How fast one core turns downloaded JPEGs into small squares, and what reduced decoding gains.

Single process, OpenCV limited to one thread (``--cv-threads``), no network: ``--images``
public-domain JPEGs are drawn by the emulator's synthetic catalog in this process, once as
web-large (``primaryImageSmall``, 500-800 px on the long side) and once as originals
(``primaryImage``, 1.5-3x larger, a few 7.5x). For each rendition and each ``--sizes`` target:

- baseline, the blog's way: the JPEGs written to a temporary folder, then
  ``cv2.imread(path)`` + ``cv2.resize(img, (size, size))``;
- ``metdata.core.imaging.decode(data, 0)`` + ``imaging.resize(rgb, size, "squash")`` from the bytes
  in memory: a full decode, to isolate what reduced decoding gains;
- the same with ``decode(data, size)``: OpenCV decodes a JPEG at 1/2, 1/4 or 1/8 scale when
  its shorter side is at least 4, 8 or 16 times the target (what the images stage does).

Prints images/s (best of ``--repeat`` passes) and the ratio to the baseline, the share of
images that were decoded reduced, and the mean absolute difference (grey levels, 0-255) between
each metdata result and the full-decode one (the mean over images, and the worst image).

    python benchmarks/images_decode.py [--images 200] [--sizes 150 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from metdata.core import imaging
from metdata.emulator.catalog import Synthetic

RENDITIONS = {"web-large": "primaryImageSmall", "original": "primaryImage"}


def draw_jpegs(catalog: Synthetic, field: str, count: int) -> list[bytes]:
    """The first ``count`` public-domain JPEGs of the catalog, in one rendition."""
    out = []
    for object_id in catalog.ids.tolist():
        record = catalog.record(object_id)
        if not record["isPublicDomain"] or not record[field]:
            continue
        data = catalog.image(urlsplit(record[field]).path).body
        header = imaging.sniff(data)
        if header is None or header[0] != "jpeg":  # 1.5 % PNGs: the blog's comparison is on JPEGs
            continue
        out.append(data)
        if len(out) == count:
            break
    return out


def reduced_share(images: list[bytes], size: int) -> float:
    """The share of images ``imaging.decode(data, size)`` decodes at 1/2 scale or smaller."""
    return sum(imaging.reduction(*imaging.sniff(data)[1:], size) > 1 for data in images) / len(images)


def best_rate(step: Callable[[int], np.ndarray], n: int, repeat: int) -> tuple[float, list[np.ndarray]]:
    """Images/s of ``step(i)`` over ``range(n)``, best of ``repeat`` passes; the last outputs."""
    best = float("inf")
    outputs: list[np.ndarray] = []
    for _ in range(repeat):
        start = time.perf_counter()
        outputs = [step(i) for i in range(n)]
        best = min(best, time.perf_counter() - start)
    return n / best, outputs


def mad(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """Mean absolute difference per image (grey levels): the mean over images and the worst."""
    per_image = [float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()) for x, y in zip(a, b, strict=True)]
    return float(np.mean(per_image)), max(per_image)


def ours(data: bytes, target: int, size: int) -> np.ndarray:
    """What the images stage does with one download: decode (reduced when ``target``), squash."""
    return imaging.resize(imaging.decode(data, target)[0], size, "squash")


def measure(rendition: str, images: list[bytes], paths: list[str], size: int, repeat: int) -> list[tuple]:
    """The three ways for one rendition and size: (rendition, size, name, images/s, baseline
    images/s, share decoded reduced, outputs, full-decode outputs) each."""
    n = len(images)
    base_rate, base_out = best_rate(lambda i: cv2.resize(cv2.imread(paths[i]), (size, size)), n, repeat)
    full_rate, full_out = best_rate(lambda i: ours(images[i], 0, size), n, repeat)
    red_rate, red_out = best_rate(lambda i: ours(images[i], size, size), n, repeat)
    # the baseline is BGR, resized with INTER_LINEAR: compared in RGB, for reference only
    base_rgb = [cv2.cvtColor(x, cv2.COLOR_BGR2RGB) for x in base_out]
    return [
        (rendition, size, "baseline: file, cv2.imread + cv2.resize", base_rate, base_rate, None, base_rgb, full_out),
        (rendition, size, "metdata: bytes, decode(target=0) + resize", full_rate, base_rate, 0.0, full_out, full_out),
        (
            rendition,
            size,
            "metdata: bytes, decode(target=size) + resize",
            red_rate,
            base_rate,
            reduced_share(images, size),
            red_out,
            full_out,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="JPEGs per rendition")
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 64], help="target square sides")
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement (the best counts)")
    parser.add_argument("--objects", type=int, default=5000, help="size of the synthetic catalog")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cv-threads", type=int, default=1, help="OpenCV threads (1: per-core throughput)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    cv2.setNumThreads(args.cv_threads)

    catalog = Synthetic(args.objects, args.seed, "dense")
    rows = []
    described = []
    with tempfile.TemporaryDirectory(prefix="metdata-decode-") as tmp:
        for rendition, field in RENDITIONS.items():
            started = time.perf_counter()
            images = draw_jpegs(catalog, field, args.images)
            logging.info("drew %d %s JPEGs in %.1f s", len(images), rendition, time.perf_counter() - started)
            paths = []
            for i, data in enumerate(images):
                path = Path(tmp) / f"{rendition}-{i:05d}.jpg"
                path.write_bytes(data)
                paths.append(str(path))
            dims = np.array([imaging.sniff(data)[1:] for data in images])
            described.append(
                f"{rendition}: {len(images)} JPEGs, {np.mean([len(d) for d in images]) / 1024:.0f} KiB and "
                f"{dims.max(axis=1).mean():.0f} px long side on average ({dims.max():d} px at most)"
            )
            for size in args.sizes:
                rows += measure(rendition, images, paths, size, args.repeat)

    print(
        f"Decode + resize, one process, OpenCV threads {args.cv_threads}, best of {args.repeat} passes "
        f"(synthetic catalog: {args.objects} objects, seed {args.seed})"
    )
    for line in described:
        print(f"  {line}")
    print(
        f"  {'rendition':<10} {'size':>4} {'method':<46} {'images/s':>8} {'x base':>7}"
        f" {'reduced':>7} {'MAD vs full decode':>18} {'worst':>6}"
    )
    for rendition, size, name, rate, base, share, out, full in rows:
        diff, worst = mad(out, full)
        reduced = "" if share is None else f"{100 * share:6.0f}%"
        print(
            f"  {rendition:<10} {size:4d} {name:<46} {rate:8.1f} x{rate / base:6.2f}"
            f" {reduced:>7} {diff:18.2f} {worst:6.2f}"
        )
    print(
        "  reduced: share of images decoded at 1/2 scale or smaller. MAD: mean absolute difference, grey "
        "levels 0-255,\n  per image against decode(target=0) + resize (INTER_AREA); the baseline's "
        "(INTER_LINEAR, no anti-aliasing) for reference."
    )


if __name__ == "__main__":
    main()
