"""The command line as a whole: every command loads, and ingestion never imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from metdata.cli import COMMANDS, main


def test_every_command_has_help():
    runner = CliRunner()
    listing = runner.invoke(main, ["--help"])
    assert listing.exit_code == 0
    for name in COMMANDS:
        assert name in listing.output
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage: " in result.output


def test_ingestion_commands_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "from metdata.cli import main\n"
        "for name in ('ids', 'ingest', 'plan', 'images', 'targets', 'fake-met'):\n"
        "    main([name, '--help'], standalone_mode=False)\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
