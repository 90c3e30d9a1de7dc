"""ARCHITECTURE.md's module table names every module there is, and no module that is gone."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the packages whose every module has a row; the others (cli/, emulator/, serve/) have one row each
STAGE_PACKAGES = ("core", "storage", "net", "acquire", "images", "explore", "train", "predict")


def modules() -> set[str]:
    """The modules a newcomer looks up: those of metdata/'s stage packages, jobs/ and cluster/, and the packages."""
    folders = ["metdata", "jobs", "cluster", *(f"metdata/{p}" for p in STAGE_PACKAGES)]
    files = [p for folder in folders for p in (REPO / folder).glob("*.py")]
    found = {str(p.relative_to(REPO)) for p in files if p.name != "__init__.py"}
    return found | {f"{p.parent.relative_to(REPO)}/" for p in (REPO / "metdata").glob("*/__init__.py")}


def test_the_module_table_names_every_module_and_only_those():
    text = (REPO / "ARCHITECTURE.md").read_text()
    table = text[text.index("## Modules") : text.index("\n## ", text.index("## Modules") + 1)]
    rows = set(re.findall(r"`((?:metdata|jobs|cluster)/[\w./]*)`", table))
    assert modules() - rows == set(), "modules without a row in ARCHITECTURE.md's table"
    gone = {r for r in rows if not (REPO / r).exists() and not r.endswith(".j2")}
    assert gone == set(), "rows naming files that do not exist"
