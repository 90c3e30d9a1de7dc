"""The README's main job, at a small size: it must keep working at every commit."""

from __future__ import annotations

import pyarrow.dataset as pads
import zarr
from click.testing import CliRunner

from metdata.cli import main


def test_demo_runs_end_to_end(tmp_path):
    result = CliRunner().invoke(
        main,
        ["demo", "--workdir", str(tmp_path), "--objects", "120", "--rate", "40"],
    )
    assert result.exit_code == 0, result.output
    table = pads.dataset(tmp_path / "data" / "objects", format="parquet").to_table()
    assert table.num_rows == 120 == len(set(table["objectID"].to_pylist()))
    assert "objects by status" in result.output and "images by status" in result.output
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000
    group = zarr.open_group(str(tmp_path / "data" / "images.zarr"), mode="r")
    assert group["images"].shape[1:] == (150, 150, 3) and group["valid"][:].any()
