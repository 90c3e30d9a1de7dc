"""Shared fixtures: real local components only (the emulator over HTTP, moto, LocalCluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from metdata.emulator import EmulatorConfig, MetEmulator

#: Real API responses (CC0), copied from shared/met-samples so the repo tests itself.
SAMPLES = Path(__file__).resolve().parent / "data" / "met-samples"


@pytest.fixture
def start_met() -> Iterator[Callable[..., MetEmulator]]:
    """Start emulators with the given config fields; all are stopped after the test."""
    running: list[MetEmulator] = []

    def start(**fields) -> MetEmulator:
        fields.setdefault("objects", 300)
        fields.setdefault("throttle", False)
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
