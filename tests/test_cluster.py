"""cluster/: connecting to real schedulers (separate processes), the version check, TF_CONFIG."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from metdata.acquire.lookup import LookupOptions
from metdata.cluster import (
    EXTRA_PACKAGES,
    ClusterError,
    check_versions,
    connect,
    mismatch_message,
    parse_spec,
    version_mismatches,
)
from metdata.cluster.tfconfig import TfConfigError, from_env, tf_config
from metdata.errors import UserError
from metdata.jobs.ingest import IngestOptions, run
from metdata.net.pacing import PaceConfig
from metdata.storage.dataset import Dataset
from metdata.train.distribute import Role, role

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A real `dask scheduler` and one `dask worker` process on 127.0.0.1; yields the address."""
    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning", "PYTHONPATH": str(REPO)}
    common = {"cwd": REPO, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(file),
            ],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 30
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(file),
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "2",
                    "--dashboard-address",
                    ":0",
                    "--local-directory",
                    str(folder),
                ],
                **common,
            )
        )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=30)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_ingest_runs_on_a_separately_started_scheduler(scheduler, start_met, tmp_path):
    met = start_met(objects=120, seed=5)
    lookup = LookupOptions(api=met.url, timeout=2.0, max_attempts=3, backoff=0.05)
    options = IngestOptions(lookup=lookup, pace=PaceConfig(rate=200, cooldown=0.5), shard_size=40)
    with connect(scheduler) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        summary = run(client, Dataset(str(tmp_path)), options)
    listed = requests.get(f"{met.url}/objects", timeout=5).json()["objectIDs"]
    assert summary["rows"] == len(listed)
    assert sum(summary["rows_by_status"].values()) == len(listed)
    assert len(list((tmp_path / "objects").glob("part-*.parquet"))) == 3


def test_matching_versions_pass_the_check(scheduler):
    with connect(scheduler) as client:
        versions = client.get_versions(packages=EXTRA_PACKAGES)
        sides = [versions["client"], versions["scheduler"], *versions["workers"].values()]
        assert {side["packages"]["metdata"] for side in sides} == {versions["client"]["packages"]["metdata"]}
        assert version_mismatches(versions) == []
        check_versions(client, scheduler)  # the same venv everywhere: no error


@pytest.mark.parametrize("spec", ["lokal", "http://host:8786", "tcp://", "k8s://", "k8s://ns", "k8s://ns/a/b"])
def test_unknown_cluster_spec_names_the_accepted_forms(spec):
    with pytest.raises(ClusterError, match=r"use 'local'.*tcp://HOST:8786.*k8s://NAMESPACE/NAME"), connect(spec):
        pass


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler of --cluster tcp://127.0.0.1:9"):  # noqa: SIM117
        with connect("tcp://127.0.0.1:9", timeout=1):
            pass


def test_k8s_spec_without_dask_kubernetes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)  # as if not installed
    with pytest.raises(ClusterError, match=r"pip install 'metdata\[k8s\]'"), connect("k8s://metdata/metdata-dask"):
        pass


def test_k8s_spec_without_a_kubernetes_cluster_is_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("dask_kubernetes.operator")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with (
        pytest.raises(ClusterError, match=r"cannot use the DaskCluster 'metdata-dask' in namespace 'metdata'"),
        connect("k8s://metdata/metdata-dask"),
    ):
        pass


def test_parse_spec():
    assert parse_spec("local") == ("local", "", "")
    assert parse_spec("tls://h:8786") == ("tcp", "tls://h:8786", "")
    assert parse_spec("k8s://team-a/metdata-dask") == ("k8s", "team-a", "metdata-dask")


def _versions(client="2026.7.1", scheduler="2026.7.1", workers=("2026.7.1",), python="3.11.7.final.0"):
    def side(dask, py=python):
        return {"packages": {"python": py, "dask": dask, "metdata": "0.1.0"}}

    return {
        "client": side(client),
        "scheduler": side(scheduler),
        "workers": {f"tcp://w{i}:1": side(v) for i, v in enumerate(workers)},
    }


def test_version_mismatch_rows_and_message():
    assert version_mismatches(_versions()) == []
    assert version_mismatches(_versions(workers=("2026.7.1", "2026.7.1"))) == []
    rows = version_mismatches(_versions(workers=("2026.7.1", "2025.12.0")))
    assert rows == [("dask", "2026.7.1", "2026.7.1", "2025.12.0/2026.7.1")]
    message = mismatch_message("tcp://h:8786", rows)
    assert "dask: client 2026.7.1, scheduler 2026.7.1, workers 2025.12.0/2026.7.1" in message
    assert "constraints.txt" in message and "tcp://h:8786" in message


def test_version_mismatch_python_by_minor_and_missing_packages():
    versions = _versions()
    versions["workers"]["tcp://w0:1"]["packages"]["python"] = "3.11.9.final.0"
    assert version_mismatches(versions) == []  # a patch release does not matter
    versions["scheduler"]["packages"]["python"] = "3.12.1.final.0"
    del versions["workers"]["tcp://w0:1"]["packages"]["metdata"]
    assert version_mismatches(versions) == [
        ("python", "3.11", "3.12", "3.11"),
        ("metdata", "0.1.0", "0.1.0", "MISSING"),
    ]


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_tf_config_for_every_index(world_size):
    configs = [
        tf_config(i, world_size, "metdata-train", "metdata-train-workers", "ns", 2222) for i in range(world_size)
    ]
    hosts = [f"metdata-train-{i}.metdata-train-workers.ns.svc.cluster.local:2222" for i in range(world_size)]
    for index, config in enumerate(configs):
        assert config == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        json.dumps(config)  # what goes into the env
    # what the training process makes of it: world size, index, only index 0 writes RUN
    roles = [role({"TF_CONFIG": json.dumps(c)}) for c in configs]
    assert roles == [Role(workers=world_size, index=i, chief=i == 0) for i in range(world_size)]
    assert all(r.multi_worker == (world_size > 1) for r in roles)


def test_training_role_with_a_chief_task_and_bad_tf_config():
    cluster = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    as_json = {kind: json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}}) for kind in cluster}
    assert role({"TF_CONFIG": as_json["chief"]}) == Role(workers=3, index=0, chief=True)
    assert role({"TF_CONFIG": as_json["worker"]}) == Role(workers=3, index=0, chief=False)
    with pytest.raises(UserError, match=r"not a tf\.distribute cluster spec"):
        role({"TF_CONFIG": "{not json"})
    with pytest.raises(UserError, match="is not in its cluster"):
        role({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 5}})})


@pytest.mark.parametrize(
    ("index", "world_size", "job", "match"),
    [(2, 2, "j", "outside 0..1"), (-1, 2, "j", "outside"), (0, 0, "j", "at least 1"), (0, 1, "", "JOB_NAME")],
)
def test_tf_config_refuses_bad_settings(index, world_size, job, match):
    with pytest.raises(TfConfigError, match=match):
        tf_config(index, world_size, job, "svc", "ns")


POD_ENV = {
    "JOB_COMPLETION_INDEX": "1",
    "WORLD_SIZE": "3",
    "JOB_NAME": "metdata-train",
    "TF_SERVICE": "metdata-train-workers",
    "POD_NAMESPACE": "metdata",
}


def test_tf_config_from_the_pod_env():
    config = from_env(POD_ENV)
    assert config["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["worker"][2] == "metdata-train-2.metdata-train-workers.metdata.svc.cluster.local:12345"
    with pytest.raises(TfConfigError, match="WORLD_SIZE is not set"):
        from_env({k: v for k, v in POD_ENV.items() if k != "WORLD_SIZE"})
    with pytest.raises(TfConfigError, match="not a number"):
        from_env({**POD_ENV, "TF_PORT": "http"})


def test_tfconfig_module_prints_or_execs():
    env = {**os.environ, **POD_ENV, "PYTHONPATH": str(REPO)}
    printed = subprocess.run(
        [sys.executable, "-m", "metdata.cluster.tfconfig"], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(printed.stdout) == from_env(POD_ENV)
    show = "import os; print(os.environ['TF_CONFIG'])"
    execed = subprocess.run(
        [sys.executable, "-m", "metdata.cluster.tfconfig", "--", sys.executable, "-c", show],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(execed.stdout) == from_env(POD_ENV)
    broken = subprocess.run(
        [sys.executable, "-m", "metdata.cluster.tfconfig"],
        env={**env, "WORLD_SIZE": "1"},
        capture_output=True,
        text=True,
    )
    assert broken.returncode == 2 and "JOB_COMPLETION_INDEX 1 is outside 0..0" in broken.stderr


@pytest.mark.slow
def test_a_taken_dashboard_port_prints_no_dask_warning():
    """Dask warns "Port 8787 is already in use" (``warnings.warn`` in its scheduler) when the port is
    taken: a command must not print it (the log line names the dashboard's address instead)."""
    import socket

    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen(1)
    except OSError:  # taken already (another run): the case under test all the same
        holder.close()
        holder = None
    code = "from metdata.cluster import connect\nwith connect('local', workers=1) as c:\n    print(c.dashboard_link)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO)
    finally:
        if holder is not None:
            holder.close()
    assert out.returncode == 0, out.stderr
    assert ":8787/" not in out.stdout  # the port was taken: Dask moved its dashboard
    assert "already in use" not in out.stderr + out.stdout, out.stderr


@pytest.mark.slow
def test_local_cluster_in_this_process_or_in_worker_processes():
    with connect("local", workers=1, processes=False) as client:
        assert client.submit(os.getpid, pure=False).result() == os.getpid()
        assert len(client.scheduler_info()["workers"]) == 1
    with connect("local", workers=1) as client:  # the default: a worker process under a nanny
        assert client.submit(os.getpid, pure=False).result() != os.getpid()


def test_an_in_process_cluster_drops_only_late_timeouts_from_asyncio(caplog):
    """A late reply's timeout while an in-process cluster closes is noise; any other unread error is kept."""
    import asyncio
    import gc

    from metdata.cluster import _LATE_REPLIES

    async def unread(exc: BaseException) -> None:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
        del future
        gc.collect()

    logger = logging.getLogger("asyncio")
    logger.addFilter(_LATE_REPLIES)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            asyncio.run(unread(TimeoutError("Timeout")))
            asyncio.run(unread(ValueError("kept")))
    finally:
        logger.removeFilter(_LATE_REPLIES)
    unread_errors = [r for r in caplog.records if r.getMessage().startswith("Future exception was never retrieved")]
    assert [type(r.exc_info[1]) for r in unread_errors] == [ValueError]
