"""A training process's role in a multi-worker run, and the mend Keras 3 needs to run one.

One process trains on one machine (``MirroredStrategy`` over its GPUs, or its CPU) unless
``TF_CONFIG`` names two or more workers: then every worker runs the same ``metdata train``
command under ``MultiWorkerMirroredStrategy`` (see ``cluster/tfconfig.py`` and
``k8s/overlays/train-multinode``). Only the chief writes RUN; the other workers write their
callbacks' files to a temporary folder (they must still save: reading the metrics'
sync-on-read variables is a collective every worker has to join).

``strategy_for`` makes the ``tf.distribute`` strategy of a role and ``accelerators`` says what
the machine has; ``check_shards`` and ``check_same_start`` stop a multi-worker run whose
workers would wait on each other for ever.

Keras 3 does not run ``fit`` under ``MultiWorkerMirroredStrategy`` as released (keras issue
20585, tensorflow issue 72388); :func:`multi_worker_fit` mends the two places that fail, on
the one model instance it is given. Verified with keras 3.15.1 / TensorFlow 2.21.0 on CPU:
two processes on 127.0.0.1 (tests/test_train.py). Not verified: GPUs, NCCL, more than one
machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metdata.errors import UserError
from metdata.train.quiet_tf import tensorflow
from metdata.train.runfolder import BACKUP, HISTORY


@dataclass(frozen=True)
class Role:
    """This process's place in a training run.

    Attributes:
        workers: how many processes train together (1 without ``TF_CONFIG``).
        index: this process's task index.
        chief: this process writes RUN.
    """

    workers: int = 1
    index: int = 0
    chief: bool = True

    @property
    def multi_worker(self) -> bool:
        """Several processes train together (``MultiWorkerMirroredStrategy``)."""
        return self.workers > 1


def role(env: Mapping[str, str] = os.environ) -> Role:
    """The role ``TF_CONFIG`` gives this process (a single chief without it).

    The chief is the task of type ``chief`` if the cluster has one, else worker 0, as in
    ``tf.distribute``.

    >>> role({})
    Role(workers=1, index=0, chief=True)
    >>> config = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    >>> role({"TF_CONFIG": json.dumps(config)})
    Role(workers=2, index=1, chief=False)

    Raises:
        UserError: TF_CONFIG is not the JSON ``tf.distribute`` expects.
    """
    text = env.get("TF_CONFIG", "").strip()
    if not text:
        return Role()
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        workers = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"TF_CONFIG is not a tf.distribute cluster spec ({exc!r}): it needs "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}; '
            "unset it to train on this machine alone"
        ) from exc
    if kind not in ("chief", "worker") or not 0 <= index < len(cluster.get(kind, [])):
        raise UserError(
            f"TF_CONFIG's task {task} is not in its cluster {cluster}: give a task type chief or worker and an "
            "index below the number of hosts of that type, or unset TF_CONFIG"
        )
    chief = kind == "chief" or ("chief" not in cluster and index == 0)
    return Role(workers=workers, index=index, chief=chief)


def accelerators() -> tuple[int, bool]:
    """How many GPUs this machine has, and whether all of them compute bfloat16 natively
    (compute capability 8.0 or more: Ampere and later). Lists the devices without starting them."""
    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus]
    return len(gpus), bool(gpus) and all(tuple(c) >= (8, 0) for c in capabilities)


def strategy_for(devices: str = "all", this: Role | None = None):
    """A MirroredStrategy over the visible GPUs, else over the logical CPU devices; with
    several workers in ``TF_CONFIG``, a MultiWorkerMirroredStrategy over each one's devices.

    Raises:
        UserError: more devices asked for than there are; a device count with TF_CONFIG.
    """
    tf = tensorflow()
    if this is not None and this.multi_worker:
        if devices != "all":
            raise UserError(
                f"--devices {devices} with a multi-worker TF_CONFIG: every worker uses all its devices; "
                "limit them with CUDA_VISIBLE_DEVICES instead"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow call

    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    n = len(found) if devices == "all" else int(devices)
    if not 1 <= n <= len(found):
        raise UserError(
            f"--devices {devices}: this machine has {len(found)} {found[0].device_type} device(s); "
            f"give a number from 1 to {len(found)} or 'all'"
        )
    return tf.distribute.MirroredStrategy([d.name for d in found[:n]])


def check_shards(chunks: int, this: Role) -> None:
    """Every worker of a multi-worker run reads its own training chunks: refuse more workers than
    chunks (checked on every worker, before the strategy: none enters a collective alone).

    >>> check_shards(3, Role(workers=2, index=1, chief=False))

    Raises:
        UserError: fewer training chunks than workers.
    """
    if this.multi_worker and chunks < this.workers:
        raise UserError(
            f"the training split spans {chunks} Zarr chunk(s), fewer than the {this.workers} workers of TF_CONFIG: "
            f"run at most {chunks} workers, or rebuild the store with a smaller --chunk"
        )


def check_same_start(strategy, work: Path) -> None:
    """Every worker must resume at the same epoch with the same history, or they would wait on
    each other's collectives for ever: compare them across workers (the same answer everywhere).

    Raises:
        UserError: the workers found different backups (a RUN that is not shared by every
            worker, or a backup read while the chief was writing it).
    """
    tf = tensorflow()
    backup = work / BACKUP / "training_metadata.json"
    epoch = json.loads(backup.read_text())["epoch"] if backup.exists() else -1
    history = work / HISTORY
    entries = len(json.loads(history.read_text())) if history.exists() else 0
    mine = tf.constant([epoch, entries, epoch**2, entries**2], tf.float64)
    total = strategy.reduce("SUM", strategy.run(lambda: tf.identity(mine)), axis=None).numpy()
    n = strategy.num_replicas_in_sync
    mean, square = total[:2] / n, total[2:] / n
    if np.any(square - mean**2 > 1e-9):  # a variance: some worker found another start
        raise UserError(
            "the workers of this run found different backups in RUN (mean epoch "
            f"{mean[0] + 1:.2f}, this worker's {epoch + 1}): RUN must be one folder every worker reads, such as "
            "an s3:// prefix; rerun all the workers together to resume from the chief's last backup"
        )


def keras_version() -> str:
    import keras

    return keras.__version__


def multi_worker_fit(model, strategy) -> None:
    """Let ``model.fit``/``evaluate`` run under ``MultiWorkerMirroredStrategy`` (keras 20585).

    Keras 3's TensorFlow trainer fails there twice: before the first step it reduces a whole
    data batch across workers just to learn its shapes (a nested structure the collective
    reduce cannot take), and after each step it reduces the scalar metric values with
    ``axis=0``. The first is replaced, on this model only, by the batch's local values; the
    second by a mean over replicas with ``axis=None``. The epoch logs come from the metrics'
    sync-on-read variables read across all workers, so they count every worker's samples.
    """
    tf = tensorflow()
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    if not (hasattr(type(model), "_maybe_symbolic_build") and hasattr(trainer, "reduce_per_replica")):
        raise UserError(
            f"multi-worker training mends Keras 3.15's internals (keras issue 20585), which keras {keras_version()} "
            "no longer has: install the keras of constraints.txt, or train on one machine (unset TF_CONFIG)"
        )

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    build = type(model)._maybe_symbolic_build

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(local, next(batches))
                break
        return build(model, data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build

    reduce = trainer.reduce_per_replica
    if getattr(reduce, "multi_worker_mended", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce(values, strategy, reduction)

    reduce_per_replica.multi_worker_mended = True
    trainer.reduce_per_replica = reduce_per_replica
