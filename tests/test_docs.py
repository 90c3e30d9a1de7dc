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


def _modules_by_name() -> dict[str, str]:
    """Short module name -> dotted path, for the modules of metdata's packages whose name is unique."""
    seen: dict[str, list[str]] = {}
    for path in (REPO / "metdata").rglob("*.py"):
        if path.name == "__init__.py":
            continue
        dotted = ".".join(path.relative_to(REPO).with_suffix("").parts)
        seen.setdefault(path.stem, []).append(dotted)
    for folder in ("jobs", "cluster"):
        for path in (REPO / folder).glob("*.py"):
            if path.name != "__init__.py":
                seen.setdefault(path.stem, []).append(f"metdata.{folder}.{path.stem}")
    return {name: found[0] for name, found in seen.items() if len(found) == 1}


FILE_TYPES = {"py", "html", "json", "parquet", "zarr", "csv", "yaml", "png", "j2", "keras", "md", "toml", "txt"}


def test_the_names_architecture_quotes_exist():
    """Every `module.name` ARCHITECTURE.md quotes (a module of metdata by its short or dotted name)
    names something that module defines."""
    import importlib

    text = (REPO / "ARCHITECTURE.md").read_text()
    modules = _modules_by_name()
    missing = []
    for token in sorted(set(re.findall(r"`([A-Za-z_][\w.]*\.[A-Za-z_]\w*)`", text))):
        parts = token.split(".")
        if parts[0] == "metdata":
            for cut in range(len(parts), 1, -1):
                try:
                    module = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                rest = parts[cut:]
                break
            else:
                missing.append(token)
                continue
        elif parts[-1] in FILE_TYPES:
            continue
        elif parts[0] in modules:
            module, rest = importlib.import_module(modules[parts[0]]), parts[1:]
        else:
            continue  # a file name, a URL part or another library's name
        target = module
        for name in rest:
            if not hasattr(target, name):
                missing.append(token)
                break
            target = getattr(target, name)
    assert missing == [], " ".join(missing)
