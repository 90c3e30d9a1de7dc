"""Training images/s with 2 workers under MultiWorkerMirroredStrategy vs 1 process, on one machine.

Each worker is its own process with ``TF_CONFIG`` on 127.0.0.1 (as the multi-node overlay's pods get
it), reading its share of the chunks through ``distribute_datasets_from_function``, with the same
wiring as ``jobs/train.py`` (``metdata.train.distribute``'s ``strategy_for``, ``multi_worker_fit``,
a repeated sharded input and a fixed step count). The baseline is one process with
``MirroredStrategy`` on the CPU, over the same store and global batch, measured in the same run.
images/s is measured over the second epoch on the chief. Both workers share this machine's cores, so
this measures what the multi-worker path costs (gRPC collectives every step), not a speed-up: that
needs machines.

    python benchmarks/train_workers.py [--size 32] [--n 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from measure import epoch_clock
from train_replicas import BATCH, CHUNK, write_store

from metdata.cluster.tfconfig import on_this_machine
from metdata.storage.dataset import Dataset
from metdata.storage.imagestore import ImageStore
from metdata.train.stream import InputOptions
from metdata.train.training import Slots


def child(n: int, size: int, root: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from metdata.train.distribute import multi_worker_fit, role, strategy_for
    from metdata.train.models import ModelOptions, build_model
    from metdata.train.stream import build_dataset

    this = role()
    strategy = strategy_for("all", this)
    classes = ("America", "China", "India", "Japan")
    labels = (np.arange(n) % 4).astype(np.int32)
    slots = Slots(np.arange(n), np.arange(n), labels, np.array([""] * n), classes, size, "squash", CHUNK)
    global_batch = BATCH * strategy.num_replicas_in_sync
    data, steps = Dataset(root), n // global_batch

    def per_worker(context):
        shard = (context.input_pipeline_id, context.num_input_pipelines)
        batch = context.get_per_replica_batch_size(global_batch)
        return build_dataset(ImageStore.open(data), slots, InputOptions(batch, seed=0, repeat=True, shard=shard))

    batches = strategy.distribute_datasets_from_function(per_worker)
    with strategy.scope():
        model = build_model("seed-cnn", ModelOptions(size, 4, augment=True))
    multi_worker_fit(model, strategy)
    clock = epoch_clock()
    model.fit(batches, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock])
    return {"images_per_s": steps * global_batch / clock.seconds[1], "workers": this.workers, "chief": this.chief}


def run_workers(workers: int, n: int, size: int, root: str) -> dict:
    """Run ``workers`` processes (1: no TF_CONFIG) and return the chief's figures."""
    args = [sys.executable, __file__, "--child", "--n", str(n), "--size", str(size), "--root", root]
    procs = []
    for config in on_this_machine(workers):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_CONFIG", None)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps(config)
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    outputs = [p.communicate(timeout=3600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: exit codes {[p.returncode for p in procs]}")
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    return next(r for r in results if r["chief"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.size, args.root)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_store(tmp, args.n, args.size)
        base = run_workers(1, args.n, args.size, tmp)
        two = run_workers(2, args.n, args.size, tmp)
    print(f"Training seed-cnn on {args.n} images of {args.size}x{args.size}, per-replica batch {BATCH}, this machine")
    print(f"  {'setup':<44} {'images/s':>9} {'x base':>7}")
    print(f"  {'1 process, MirroredStrategy (baseline)':<44} {base['images_per_s']:>9.0f} x{1:>5.2f}")
    ratio = two["images_per_s"] / base["images_per_s"]
    print(f"  {'2 workers, MultiWorkerMirroredStrategy':<44} {two['images_per_s']:>9.0f} x{ratio:>5.2f}")
    print("  both workers share this machine's cores: the ratio is the multi-worker path's overhead, not a speed-up")


if __name__ == "__main__":
    main()
