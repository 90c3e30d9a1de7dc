"""The house's rules, checked on the code: stage packages whose imports point one way, a top level
that holds only the package's face, and each shared name defined once."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "metdata"

#: What each package may import from metdata (itself, and the packages below it). The stages
#: depend on the layers under them and on earlier stages' outputs only through the dataset root.
ALLOWED = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "net": {"core", "net"},
    "acquire": {"core", "storage", "net", "acquire"},
    "images": {"core", "storage", "net", "acquire", "images"},  # a row without a record is looked up first
    "explore": {"core", "storage", "explore"},
    "train": {"core", "storage", "train"},
    "predict": {"core", "storage", "net", "train", "predict"},
    "serve": {"core", "storage", "net", "train", "predict", "serve"},
    "emulator": {"core", "emulator"},
}
EVERYWHERE = {"errors"}  # metdata/errors.py: the base of every error a user can fix


def metdata_imports(path: Path) -> set[str]:
    """The metdata modules a file imports (at the top or inside a function), dotted."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "metdata":
                found |= {f"metdata.{a.name}" for a in node.names}
            elif node.module.startswith("metdata."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("metdata.")}
    return found


def test_each_package_imports_only_the_layers_under_it():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / package).rglob("*.py")):
            for name in metdata_imports(path):
                first = name.split(".")[1]
                if first not in allowed | EVERYWHERE:
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert wrong == []


def test_the_top_level_holds_only_the_face_main_errors_and_packages():
    loose = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "errors.py"}
    assert loose == set()
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert set(ALLOWED) | {"cli"} == packages


def _definitions(name: str) -> list[str]:
    """Where ``name`` is assigned or defined at a module's top level, in metdata/, jobs/ and cluster/."""
    where = []
    for folder in ("metdata", "jobs", "cluster"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                targets = []
                if isinstance(node, ast.Assign):
                    names = [e for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
                    targets = [e.id for e in names if isinstance(e, ast.Name)]
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    targets = [node.target.id]
                elif isinstance(node, ast.ClassDef | ast.FunctionDef):
                    targets = [node.name]
                if name in targets:
                    where.append(str(path.relative_to(REPO)))
    return where


def test_shared_names_are_defined_once():
    for name in ("STATUS_SCHEMA", "MET_IMAGE_HOST", "DEFAULT_STORE", "ImageStore", "objects_table", "Status"):
        assert len(_definitions(name)) == 1, (name, _definitions(name))


def test_the_store_name_is_written_only_in_the_layout():
    layout = PACKAGE / "storage" / "layout.py"
    found = []
    for folder in ("metdata", "jobs", "cluster"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == layout:
                continue
            tree = ast.parse(path.read_text())
            docstrings = {
                id(n.body[0].value)
                for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and n.body
                and isinstance(n.body[0], ast.Expr)
                and isinstance(n.body[0].value, ast.Constant)
            }
            found += [
                f"{path.relative_to(REPO)}:{node.lineno}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and "images.zarr" in node.value
            ]
    assert found == []
