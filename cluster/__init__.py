"""Where jobs run: one way to get a Dask client, whatever the cluster.

``--cluster local`` starts a LocalCluster sized to this machine; ``--cluster tcp://HOST:PORT``
connects to a running scheduler; ``--cluster k8s://NAMESPACE/NAME`` connects to a DaskCluster
run by the dask-kubernetes operator (``pip install 'metdata[k8s]'``). Jobs receive a ``Client``
and never care which it was. On a remote cluster, the client, scheduler and workers must run
the same package versions (tasks are pickled here and run there): ``connect`` checks it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dask.config
import yaml
from distributed import Client, LocalCluster

from metdata.errors import UserError

log = logging.getLogger(__name__)

# "Port 8787 is already in use ... Hosting the HTTP server on port N instead": distributed warns through
# ``warnings.warn`` from the scheduler (run in this process's event-loop thread), so the filter must be
# process-wide; a bare ``warnings.catch_warnings()`` only saved and restored the filters, filtering
# nothing. The dashboard address is logged by ``local_client`` instead.
warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)

#: What must match between client, scheduler and workers: Dask's own wire packages, and what
#: metdata's tasks (and the scheduler's pacer plugin) unpickle and run. Python is compared by
#: major.minor only.
CHECKED_PACKAGES = (
    "python",
    "dask",
    "distributed",
    "msgpack",
    "cloudpickle",
    "tornado",
    "toolz",
    "numpy",
    "metdata",
    "pyarrow",
    "zarr",
    "fsspec",
    "s3fs",
)
#: The extra packages ``Client.get_versions`` must be asked for (Dask reports the others itself).
EXTRA_PACKAGES = ["metdata", "pyarrow", "zarr", "fsspec", "s3fs"]


class ClusterError(UserError):
    """The cluster could not be started or reached; the message says what to do."""


def parse_spec(spec: str) -> tuple[str, str, str]:
    """Split a ``--cluster`` value into ``(kind, address or namespace, name)``.

    Args:
        spec: ``local``, ``tcp://HOST:PORT`` (or ``tls://``), or ``k8s://NAMESPACE/NAME``.

    Raises:
        ClusterError: for anything else, naming the accepted forms.

    >>> parse_spec("local")
    ('local', '', '')
    >>> parse_spec("tcp://10.0.0.5:8786")
    ('tcp', 'tcp://10.0.0.5:8786', '')
    >>> parse_spec("k8s://metdata/metdata-dask")
    ('k8s', 'metdata', 'metdata-dask')
    """
    if spec == "local":
        return ("local", "", "")
    if spec.startswith(("tcp://", "tls://")) and len(spec) > len("tcp://"):
        return ("tcp", spec, "")
    if spec.startswith("k8s://"):
        namespace, _, name = spec.removeprefix("k8s://").partition("/")
        if namespace and name and "/" not in name:
            return ("k8s", namespace, name)
    raise ClusterError(
        f"unknown --cluster {spec!r}: use 'local', a scheduler address like tcp://HOST:8786, "
        "or a dask-kubernetes DaskCluster as k8s://NAMESPACE/NAME"
    )


def version_mismatches(versions: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """The checked packages whose versions differ between client, scheduler and workers.

    Args:
        versions: what ``Client.get_versions()`` returns: ``{"client": {"packages": {...}},
            "scheduler": {"packages": {...}}, "workers": {address: {"packages": {...}}}}``.

    Returns:
        ``(package, client, scheduler, workers)`` rows, versions as text (``MISSING`` if absent,
        several worker versions joined by ``/``); empty when everything matches.

    >>> same = {"packages": {"dask": "2026.7.1", "python": "3.11.7.final.0"}}
    >>> version_mismatches({"client": same, "scheduler": same, "workers": {"w1": same}})
    []
    >>> old = {"packages": {"dask": "2025.1.0", "python": "3.11.9.final.0"}}
    >>> version_mismatches({"client": same, "scheduler": same, "workers": {"w1": old}})
    [('dask', '2026.7.1', '2026.7.1', '2025.1.0')]
    """

    def of(side: Mapping[str, Any] | None, package: str) -> str:
        found = ((side or {}).get("packages") or {}).get(package)
        if found is None:
            return "MISSING"
        return ".".join(str(found).split(".")[:2]) if package == "python" else str(found)

    rows = []
    workers = versions.get("workers") or {}
    for package in CHECKED_PACKAGES:
        client = of(versions.get("client"), package)
        scheduler = of(versions.get("scheduler"), package)
        on_workers = sorted({of(w, package) for w in workers.values()})
        if len({client, scheduler, *on_workers}) > 1:
            rows.append((package, client, scheduler, "/".join(on_workers) or "-"))
    return rows


def mismatch_message(where: str, rows: list[tuple[str, str, str, str]]) -> str:
    """The error for :func:`version_mismatches` rows: which packages differ, and the fix.

    >>> print(mismatch_message("tcp://h:8786", [("dask", "2026.7.1", "2026.7.1", "2025.1.0")]))
    ... # doctest: +NORMALIZE_WHITESPACE
    the Dask client, scheduler and workers at tcp://h:8786 run different versions:
      dask: client 2026.7.1, scheduler 2026.7.1, workers 2025.1.0
    tasks are pickled here and run there, so they must match: install metdata with the same
    constraints.txt everywhere (pip install -c constraints.txt ...; the images of docker/ do),
    or run this command from the cluster's own image
    """
    lines = [f"the Dask client, scheduler and workers at {where} run different versions:"]
    lines += [f"  {p}: client {c}, scheduler {s}, workers {w}" for p, c, s, w in rows]
    lines.append(
        "tasks are pickled here and run there, so they must match: install metdata with the same\n"
        "constraints.txt everywhere (pip install -c constraints.txt ...; the images of docker/ do),\n"
        "or run this command from the cluster's own image"
    )
    return "\n".join(lines)


def check_versions(client: Client, where: str) -> None:
    """Raise ClusterError if the client, scheduler and workers differ in a checked package.

    (``Client.get_versions(check=True)`` only warns, and not about metdata's own packages.)

    Raises:
        ClusterError: naming each mismatched package and the fix.
    """
    rows = version_mismatches(client.get_versions(packages=EXTRA_PACKAGES))
    if rows:
        raise ClusterError(mismatch_message(where, rows))


def dask_settings() -> dict[str, object]:
    """``cluster/dask.yaml`` (what the image's Dask processes read) as dotted keys, for a LocalCluster."""
    flat: dict[str, object] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            flat[prefix] = node

    walk("", yaml.safe_load((Path(__file__).parent / "dask.yaml").read_text()))
    return flat


class _LateReplies(logging.Filter):
    """Drops asyncio's "Future exception was never retrieved" for a timeout or a closed comm.

    With the cluster in this process, a request a chunk task handed on (late) may still end while
    the cluster closes and report to the scheduler's pacer; that report then times out, and
    asyncio logs the unread exception as an ERROR with a traceback. The run is finished and
    accounted for by then (the slot's follow-up or its row), so the line is noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm.core import CommClosedError

        exc = record.exc_info[1] if record.exc_info else None
        late = isinstance(exc, TimeoutError | CommClosedError)
        return not (late and record.getMessage().startswith("Future exception was never retrieved"))


_LATE_REPLIES = _LateReplies()


@contextmanager
def connect(
    spec: str = "local",
    workers: int | None = None,
    threads_per_worker: int = 2,
    timeout: float = 20.0,
    processes: bool = True,
) -> Iterator[Client]:
    """Yield a Dask client for ``spec``; shut down what was started on exit.

    A remote cluster (``tcp://``, ``k8s://``) is left running, and its versions are checked
    against this client's first.

    Args:
        spec: ``local``, a scheduler address ``tcp://HOST:PORT``, or ``k8s://NAMESPACE/NAME``
            (a DaskCluster of the dask-kubernetes operator; needs ``pip install 'metdata[k8s]'``
            and a kubeconfig or in-cluster service account allowed to read it).
        workers: worker processes for ``local`` (default: one per core).
        threads_per_worker: task threads per local worker; ingestion is I/O-bound.
        timeout: seconds to wait for a remote scheduler.
        processes: ``local`` only: each worker a process of its own under a nanny (restarted if it
            dies or outgrows its memory), as on a real cluster; False: the scheduler and workers run
            in this process, as threads. That start costs no imports (each worker process and
            nanny imports Dask and metdata again: ~2 s of CPU for two), and suits work whose CPU
            is spent outside the GIL (the images stage: sockets, OpenCV, Blosc); Python-heavy work
            (parsing the API's JSON) wants processes.

    Raises:
        ClusterError: for an unknown spec, an unreachable scheduler or cluster, dask-kubernetes
            missing, or mismatched versions.
    """
    kind, first, second = parse_spec(spec)
    if kind == "local":
        n = workers or os.cpu_count() or 1
        if not processes:
            logging.getLogger("asyncio").addFilter(_LATE_REPLIES)  # once: a filter is added only once
        with (
            dask.config.set(dask_settings()),
            LocalCluster(
                n_workers=n,
                threads_per_worker=threads_per_worker,
                processes=processes,
                dashboard_address="127.0.0.1:8787",  # this machine only, as the log says
            ) as cluster,
            Client(cluster) as client,
        ):
            log.info(
                "Dask LocalCluster: %d workers x %d threads (%s); dashboard %s",
                n,
                threads_per_worker,
                "worker processes" if processes else "in this process",
                client.dashboard_link,
            )
            yield client
        return
    with ExitStack() as stack:
        # A KubeCluster made from_name only port-forwards and watches: closing it leaves the DaskCluster.
        address = first if kind == "tcp" else stack.enter_context(_kube_cluster(first, second))
        client = stack.enter_context(_client(address, spec, timeout))
        check_versions(client, spec)
        log.info(
            "Dask scheduler %s: %d workers; dashboard %s",
            spec,
            len(client.scheduler_info()["workers"]),
            client.dashboard_link,
        )
        yield client


def _client(address, spec: str, timeout: float) -> Client:
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler of --cluster {spec} ({exc}); check the address and that "
            "the scheduler runs (e.g. 'dask scheduler', or the DaskCluster of k8s/), or use --cluster local"
        ) from exc


def _kube_cluster(namespace: str, name: str):
    """The operator's KubeCluster for an existing DaskCluster (never created nor deleted here)."""
    try:
        from dask_kubernetes.operator import KubeCluster
        from kr8s import APITimeoutError, NotFoundError, ServerError
    except ImportError as exc:
        raise ClusterError(
            f"--cluster k8s://{namespace}/{name} needs dask-kubernetes: pip install 'metdata[k8s]' ({exc})"
        ) from exc
    try:
        return KubeCluster.from_name(name, namespace=namespace, shutdown_on_close=False, quiet=True)
    except (ValueError, OSError, TimeoutError, NotFoundError, ServerError, APITimeoutError) as exc:
        raise ClusterError(
            f"cannot use the DaskCluster {name!r} in namespace {namespace!r} ({exc}); check that it exists "
            f"('kubectl -n {namespace} get daskclusters') and that your kubeconfig can reach the cluster"
        ) from exc
