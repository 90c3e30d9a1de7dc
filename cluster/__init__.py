"""Where jobs run: one way to get a Dask client, whatever the cluster.

``--cluster local`` starts a LocalCluster sized to this machine; ``--cluster tcp://HOST:PORT``
connects to a running scheduler. Jobs receive a ``Client`` and never care which it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from metdata.errors import UserError

log = logging.getLogger(__name__)


class ClusterError(UserError):
    """The cluster could not be started or reached; the message says what to do."""


@contextmanager
def connect(spec: str = "local", workers: int | None = None, threads_per_worker: int = 2) -> Iterator[Client]:
    """Yield a Dask client for ``spec``; shut down what was started on exit.

    Args:
        spec: ``local`` or a scheduler address ``tcp://HOST:PORT``.
        workers: worker processes for ``local`` (default: one per core).
        threads_per_worker: task threads per local worker; ingestion is I/O-bound.

    Raises:
        ClusterError: for an unknown spec or an unreachable scheduler.
    """
    if spec == "local":
        n = workers or os.cpu_count() or 1
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":8787",
            ) as cluster,
            Client(cluster) as client,
        ):
            log.info(
                "Dask LocalCluster: %d workers x %d threads; dashboard %s",
                n,
                threads_per_worker,
                client.dashboard_link,
            )
            yield client
        return
    if not spec.startswith(("tcp://", "tls://")):
        raise ClusterError(f"unknown --cluster {spec!r}: use 'local' or a scheduler address like tcp://HOST:8786")
    try:
        client = Client(spec, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {spec} ({exc}); start one with 'dask scheduler' or use --cluster local"
        ) from exc
    with client:
        log.info(
            "Dask scheduler %s: %d workers; dashboard %s",
            spec,
            len(client.scheduler_info()["workers"]),
            client.dashboard_link,
        )
        yield client
