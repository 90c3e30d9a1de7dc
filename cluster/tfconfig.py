"""``TF_CONFIG`` for multi-worker training from a Kubernetes Indexed Job.

Each pod of an Indexed Job (``completionMode: Indexed``) gets ``JOB_COMPLETION_INDEX`` and, with
``subdomain`` set to a headless Service, the stable host name
``JOB-INDEX.SERVICE.NAMESPACE.svc.cluster.local``. Every pod lists all of them in the same order
and names itself by its index, which is what ``tf.distribute.MultiWorkerMirroredStrategy`` reads.
Index 0 is the chief (it writes the checkpoints and the run's outputs).

In a pod (see ``k8s/overlays/train-multinode``)::

    python -m metdata.cluster.tfconfig                          # print the JSON
    python -m metdata.cluster.tfconfig -- metdata train ...     # set TF_CONFIG, then exec the command

The settings come from the environment: ``JOB_COMPLETION_INDEX`` (set by Kubernetes),
``WORLD_SIZE``, ``JOB_NAME``, ``TF_SERVICE``, ``POD_NAMESPACE`` and ``TF_PORT`` (default 12345).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence

DEFAULT_PORT = 12345


class TfConfigError(ValueError):
    """The pod's settings cannot make a TF_CONFIG; the message names the variable to fix."""


def tf_config(
    index: int, world_size: int, job_name: str, service: str, namespace: str, port: int = DEFAULT_PORT
) -> dict:
    """The ``TF_CONFIG`` of worker ``index`` of ``world_size`` pods of Indexed Job ``job_name``.

    Args:
        index: this pod's ``JOB_COMPLETION_INDEX`` (0 is the chief).
        world_size: the Job's ``completions`` (= ``parallelism``): the number of workers.
        job_name: the Job's name (its pods are named ``JOB-INDEX``).
        service: the headless Service the pods' ``subdomain`` names.
        namespace: the pods' namespace.
        port: the port each worker listens on for the strategy's collectives.

    Raises:
        TfConfigError: for an index outside ``[0, world_size)`` or an empty name.

    >>> tf_config(1, 2, "train", "train-workers", "metdata")["task"]
    {'type': 'worker', 'index': 1}
    >>> tf_config(1, 2, "train", "train-workers", "metdata")["cluster"]["worker"][0]
    'train-0.train-workers.metdata.svc.cluster.local:12345'
    """
    if world_size < 1:
        raise TfConfigError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if not 0 <= index < world_size:
        raise TfConfigError(f"JOB_COMPLETION_INDEX {index} is outside 0..{world_size - 1} (WORLD_SIZE {world_size})")
    for what, value in (("JOB_NAME", job_name), ("TF_SERVICE", service), ("POD_NAMESPACE", namespace)):
        if not value:
            raise TfConfigError(f"{what} is empty: set it in the pod's env")
    hosts = [f"{job_name}-{i}.{service}.{namespace}.svc.cluster.local:{port}" for i in range(world_size)]
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def on_this_machine(world_size: int) -> list[dict]:
    """The ``TF_CONFIG`` of each of ``world_size`` worker processes on 127.0.0.1 (free ports),
    to run a multi-worker training on one machine (the tests and benchmarks do).

    >>> [c["task"]["index"] for c in on_this_machine(2)]
    [0, 1]
    """
    sockets = [socket.socket() for _ in range(world_size)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [{"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}} for i in range(world_size)]


def from_env(env: Mapping[str, str]) -> dict:
    """:func:`tf_config` from a pod's environment variables (names in the module docstring).

    Raises:
        TfConfigError: a variable missing or not a number.
    """
    try:
        return tf_config(
            index=int(env["JOB_COMPLETION_INDEX"]),
            world_size=int(env["WORLD_SIZE"]),
            job_name=env["JOB_NAME"],
            service=env["TF_SERVICE"],
            namespace=env["POD_NAMESPACE"],
            port=int(env.get("TF_PORT", DEFAULT_PORT)),
        )
    except KeyError as exc:
        raise TfConfigError(f"{exc.args[0]} is not set: the Indexed Job's pod template must set it") from exc
    except ValueError as exc:
        if isinstance(exc, TfConfigError):
            raise
        raise TfConfigError(f"a TF_CONFIG variable is not a number ({exc})") from exc


def main(argv: Sequence[str]) -> int:
    """Print the pod's TF_CONFIG, or with ``-- COMMAND...`` exec the command with it set."""
    try:
        config = json.dumps(from_env(os.environ))
    except TfConfigError as exc:
        print(f"metdata.cluster.tfconfig: {exc}", file=sys.stderr)
        return 2
    command = list(argv[1:]) if argv[:1] == ["--"] else list(argv)
    if not command:
        print(config)
        return 0
    os.environ["TF_CONFIG"] = config
    os.execvp(command[0], command)  # replaces this process: the command's exit code is the pod's
    return 0  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
