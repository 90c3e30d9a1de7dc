"""The README's main job, at a small size: it must keep working at every commit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from metdata.cli import main


def test_demo_smoke_run(tmp_path):
    result = CliRunner().invoke(
        main,
        ["demo", "--workdir", str(tmp_path), "--objects", "200", "--lookups", "8", "--rate", "8"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "smoke.json").read_text())
    assert sum(summary["objects"].values()) == 8
    assert summary["emulator"]["api"]["requests"] >= 9
    assert "objects by status" in result.output
