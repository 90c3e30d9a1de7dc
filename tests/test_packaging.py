"""The installed layout: jobs/ and cluster/ are metdata.jobs and metdata.cluster, nothing top-level."""

import doctest
import importlib
import importlib.resources
import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import metdata.cluster

REPO = Path(__file__).resolve().parents[1]


def test_every_package_is_in_pyproject():
    """pyproject lists packages one by one: one missing would be missing from the wheel (the image)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "metdata").rglob("__init__.py")}
    assert on_disk | {"metdata.jobs", "metdata.cluster"} <= listed


def test_cluster_doctests():
    """cluster/ is outside metdata/, so --doctest-modules would import it as `cluster`: they run here."""
    names = ["metdata.cluster", *(f"metdata.cluster.{m.name}" for m in pkgutil.iter_modules(metdata.cluster.__path__))]
    results = [doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS) for name in names]
    assert sum(r.attempted for r in results) > 0
    assert [r.failed for r in results] == [0] * len(names)


def test_dask_yaml_is_package_data():
    assert "distributed" in (importlib.resources.files("metdata.cluster") / "dask.yaml").read_text()


def test_nothing_installed_top_level(tmp_path):
    """Outside the repository (its root not on sys.path): metdata.jobs resolves to jobs/; jobs, cluster do not."""
    code = (
        "import importlib.util as u, json; print(json.dumps([getattr(u.find_spec(n), 'origin', None) "
        "for n in ('jobs', 'cluster', 'metdata.jobs.ingest', 'metdata.cluster.tfconfig')]))"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    jobs, cluster, ingest, tfconfig = json.loads(out.stdout)
    assert (jobs, cluster) == (None, None)
    assert Path(ingest).parts[-2:] == ("jobs", "ingest.py")
    assert Path(tfconfig).parts[-2:] == ("cluster", "tfconfig.py")
