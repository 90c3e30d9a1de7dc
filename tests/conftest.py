"""Shared fixtures: real local components only (the emulator over HTTP, moto, LocalCluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from metdata.emulator import EmulatorConfig, MetEmulator

#: Modules whose every test is slow: end-to-end demos, TensorFlow training, the browser, CLI runs in
#: subprocesses, LocalClusters started per test, rendered manifests.
SLOW_MODULES = {
    "test_cluster",
    "test_concurrency",
    "test_confined",
    "test_demo",
    "test_images",
    "test_ingest",
    "test_k8s",
    "test_serve",
    "test_stream",
    "test_train",
    "test_train_hardening",
    "test_train_options",
}
#: Fixtures that make any test slow: a Dask cluster, moto's S3 server.
SLOW_FIXTURES = {"dask_client", "moto_server", "s3"}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the slow tests ``slow``: the everyday tier is ``pytest -m "not slow"``; CI runs them all."""
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if name in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


#: Real API responses (CC0), copied from shared/met-samples so the repo tests itself.
SAMPLES = Path(__file__).resolve().parent / "data" / "met-samples"


@pytest.fixture
def start_met() -> Iterator[Callable[..., MetEmulator]]:
    """Start emulators with the given config fields; all are stopped after the test.

    The synthetic catalog's mix is ``dense`` here unless asked (``mix="real"``): the tests written
    before the real mix count on its many paintings.
    """
    running: list[MetEmulator] = []

    def start(**fields) -> MetEmulator:
        fields.setdefault("objects", 300)
        fields.setdefault("throttle", False)
        fields.setdefault("mix", "dense")
        met = MetEmulator(EmulatorConfig(**fields)).start()
        running.append(met)
        return met

    yield start
    for met in running:
        met.stop()


@pytest.fixture
def met(start_met) -> MetEmulator:
    """A small synthetic emulator, no throttle, no faults."""
    return start_met()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def stats(met: MetEmulator) -> dict:
    return requests.get(f"{met.base}/__emulator__/stats", timeout=5).json()


@pytest.fixture(scope="session")
def dask_client():
    """A real LocalCluster: 2 worker processes, 2 threads each, shared by the session."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 server on 127.0.0.1, random port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server._server.server_port}"
    server.stop()


@pytest.fixture
def s3(moto_server):
    """A fresh bucket on the moto server; yields (root URL, storage options). Reset per test."""
    import s3fs

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    options = {"endpoint_url": moto_server, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_server}, key="testing", secret="testing")
    fs.mkdir("metdata-test")
    fs.invalidate_cache()
    # fsspec caches filesystem instances (and their listings) per options: the one the code
    # under test gets must forget the bucket the reset just emptied
    from metdata.storage.dataset import Dataset

    Dataset("s3://metdata-test/dataset", options).fs.invalidate_cache()
    return "s3://metdata-test/dataset", options
