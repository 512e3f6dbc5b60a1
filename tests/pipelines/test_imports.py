"""The data path points one way: importing any ``pipelines`` or ``schemas`` module loads no orchestrator, no
labelling service client and no training code (DESIGN.md: pipelines/ is pure data steps)."""

import pkgutil
import subprocess
import sys

import pipelines
import schemas

FORBIDDEN = ("prefect", "training", "flows", "labelling")
# The stages in data-path order (README "Layout"): a module may import its own stage or an earlier one, never a later.
STAGES = ("store", "curate", "models", "bench", "pairs", "release")


def _modules(pkg) -> list[str]:
    found = pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}.")
    return [m.name for m in found if not m.name.rsplit(".", 1)[-1].startswith("_")]


def test_pipelines_and_schemas_import_nothing_above_them():
    mods = _modules(pipelines) + _modules(schemas)
    assert {f"pipelines.{s}" for s in STAGES} <= set(mods), "every stage subpackage is imported"
    assert len(mods) > 30
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"print(','.join(sorted({{k.split('.')[0] for k in sys.modules}} & set({FORBIDDEN!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing pipelines/schemas loaded: {out}"


def test_no_pipelines_or_schemas_source_imports_upward_even_lazily():
    """A function-level import is still an upward arrow (it once hid ``op4ksr:`` in pipelines.models.upscalers)."""
    import ast
    from pathlib import Path

    bad = []
    for pkg in (pipelines, schemas):
        for path in Path(pkg.__path__[0]).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                bad += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_every_pipelines_import_points_down_the_data_path():
    import ast
    from pathlib import Path

    root = Path(pipelines.__path__[0])
    assert sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(STAGES)
    assert sorted(p.name for p in root.glob("*.py")) == ["__init__.py"], "every module lives in a stage subpackage"
    bad = []
    for path in root.rglob("*.py"):
        if path.parent == root:
            continue
        own = STAGES.index(path.relative_to(root).parts[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipelines."):
                target = node.module.split(".")[1]
                if STAGES.index(target) > own:
                    bad.append(f"{path.relative_to(root)}:{node.lineno} imports {node.module}")
    assert bad == []


def test_the_readme_layout_names_every_stage_and_module():
    """The README's layout section (picture + table) is the newcomer's map: a new or renamed module fails here."""
    from pathlib import Path

    root = Path(pipelines.__path__[0])
    readme = (root.parent / "README.md").read_text()
    section = readme[readme.index("## Layout\n") :].split("\n## ", 1)[0]
    missing = [f"pipelines/{s}/" for s in STAGES if f"pipelines/{s}/" not in section]
    for stage in STAGES:
        missing += [f"{stage}/{p.stem}" for p in (root / stage).glob("[!_]*.py") if p.stem not in section]
    assert missing == []


def test_the_readme_layout_names_every_labelling_module():
    """The labelling row of the layout table names each module of labelling/ (a split or a new module fails here)."""
    from pathlib import Path

    root = Path(pipelines.__path__[0]).parent
    readme = (root / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `labelling/` |"))
    missing = [p.stem for p in (root / "labelling").glob("[!_]*.py") if f"`{p.stem}`" not in row]
    assert missing == []
