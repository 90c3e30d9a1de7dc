"""Training step throughput by precision and XLA, and a backbone's accuracy against seed-cnn.

``step`` (the default): seed-cnn at 150 px on this machine, float32 vs mixed_bfloat16, XLA
(``jit_compile``) off vs on, one replica, in-memory images (real-looking ones, see
``zarr_chunks.real_images``) so only the train step is measured; each setting in its own process;
images/s over the epochs after the first (which traces and compiles), and the first and last
epoch's loss (every setting must learn). No augmentation: XLA cannot compile Keras' random image
layers. The float32, XLA-off row is the baseline. On a CPU these ratios say nothing of a GPU.

``accuracy``: the emulator's painting-culture at 64 px (``metdata fake-met``, then the
commands of ``metdata demo``), ``seed-cnn`` vs ``efficientnetv2-b0 --weights none`` with the
same epochs and options; best validation accuracy and training time of each. Informative only:
a backbone's gain needs ImageNet weights and real paintings.

    python benchmarks/train_step.py [step] [--size 150] [--images 128] [--epochs 3]
    python benchmarks/train_step.py accuracy [--objects 5000] [--size 64] [--epochs 15]
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

REPO = Path(__file__).resolve().parent.parent
BATCH = 32
SETTINGS = [("float32", False), ("mixed_bfloat16", False), ("float32", True), ("mixed_bfloat16", True)]


def child(precision: str, jit: bool, size: int, n: int, epochs: int, batch: int) -> dict:
    """One setting's train-step throughput (run in its own process: the dtype policy is global)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf
    from measure import epoch_clock
    from zarr_chunks import real_images

    from metdata.train.models import ModelOptions, build_model

    keras.utils.set_random_seed(0)
    pixels = real_images(n, size, seed=0)
    labels = (np.arange(n) % 4).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((pixels, labels)).shuffle(n, seed=0).batch(batch).cache().prefetch(2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # as metdata train runs it, with one replica
    with strategy.scope():
        model = build_model("seed-cnn", ModelOptions(size, 4, augment=False, precision=precision, jit=jit))
    clock = epoch_clock()
    losses = model.fit(data, epochs=epochs, verbose=0, callbacks=[clock]).history["loss"]
    return {
        "images_per_s": n * (epochs - 1) / sum(clock.seconds[1:]),
        "first_epoch_s": clock.seconds[0],
        "loss": [losses[0], losses[-1]],
        "jit_compile": bool(model.jit_compile),
    }


def step(args) -> None:
    rows = []
    for precision, jit in SETTINGS:
        command = [sys.executable, __file__, "--child", precision, str(int(jit))]
        command += ["--size", str(args.size), "--images", str(args.images), "--epochs", str(args.epochs)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=7200, cwd=REPO)
        if result.returncode:
            rows.append((precision, jit, {"error": result.stderr.strip().splitlines()[-1]}))
            continue
        rows.append((precision, jit, json.loads(result.stdout.strip().splitlines()[-1])))
    base = rows[0][2]["images_per_s"]
    print(
        f"seed-cnn train step, {args.size} px, batch {BATCH}, {args.images} in-memory images, "
        f"{os.cpu_count()} CPU cores, images/s over epochs 2-{args.epochs}"
    )
    print(f"  {'precision':<15} {'XLA':<4} {'images/s':>9} {'x base':>7} {'1st epoch s':>11}  loss first -> last")
    for precision, jit, r in rows:
        if "error" in r:
            print(f"  {precision:<15} {'on' if jit else 'off':<4} failed: {r['error']}")
            continue
        print(
            f"  {precision:<15} {'on' if jit else 'off':<4} {r['images_per_s']:>9.1f} "
            f"x{r['images_per_s'] / base:>5.2f} {r['first_epoch_s']:>11.1f}  {r['loss'][0]:.4f} -> {r['loss'][1]:.4f}"
        )


def metdata(*command: str, timeout: float = 7200) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "metdata", *command], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if result.returncode:
        raise RuntimeError(f"metdata {command[0]} failed: {result.stderr[-2000:]}")
    return result.stdout


def accuracy(args) -> None:
    from measure import fake_met

    from metdata.cli.demo import Pipeline

    rows = []
    flags = ("--no-throttle", "--mix", "dense", "--objects", str(args.objects))
    with tempfile.TemporaryDirectory() as tmp, fake_met(*flags) as (url, _):
        pipeline = Pipeline(api=url, root=f"{tmp}/data", workdir=Path(tmp), rate=80, size=args.size, chunk=64)
        for command in pipeline.acquire():
            metdata(*command)
        for model, extra in (("seed-cnn", []), ("efficientnetv2-b0", ["--weights", "none"])):
            command = ["train", "--data", pipeline.root, "--target", "painting-culture", "--out", f"{tmp}/{model}"]
            command += ["--model", model, "--epochs", str(args.epochs), "--seed", "1", *extra]
            started = time.perf_counter()
            printed = metdata(*command)  # Keras' epoch lines, then the run.json
            summary = json.loads(printed[printed.index("\n{") :] if not printed.startswith("{") else printed)
            rows.append((model, summary, time.perf_counter() - started))
    n = rows[0][1]
    print(
        f"painting-culture from the emulator ({args.objects} objects), {args.size} px, {n['train_images']} training "
        f"/ {n['val_images']} validation images, {args.epochs} epochs, batch 64, augmentation on, CPU"
    )
    print(f"  {'model':<32} {'best val acc':>12} {'at epoch':>8} {'train s':>8}")
    for model, summary, seconds in rows:
        label = model + (" (weights none)" if model != "seed-cnn" else "")
        print(f"  {label:<32} {summary['best_val_accuracy']:>12.3f} {summary['best_epoch'] + 1:>8} {seconds:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["step", "accuracy"], default="step")
    parser.add_argument("--size", type=int)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--child", nargs=2, metavar=("PRECISION", "JIT"))
    args = parser.parse_args()
    if args.child:
        precision, jit = args.child
        print(json.dumps(child(precision, jit == "1", args.size, args.images, args.epochs, BATCH)))
    elif args.mode == "step":
        args.size, args.epochs = args.size or 150, args.epochs or 3
        step(args)
    else:
        args.size, args.epochs = args.size or 64, args.epochs or 15
        accuracy(args)


if __name__ == "__main__":
    main()
