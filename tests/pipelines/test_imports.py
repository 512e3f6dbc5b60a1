"""The data path points one way: importing any ``pipelines`` or ``schemas`` module loads no orchestrator, no
labelling service client and no training code (DESIGN.md: pipelines/ is pure data steps)."""

import pkgutil
import subprocess
import sys

import pipelines
import schemas

FORBIDDEN = ("prefect", "training", "flows", "labelling")


def _modules(pkg) -> list[str]:
    return [f"{pkg.__name__}.{m.name}" for m in pkgutil.walk_packages(pkg.__path__) if not m.name.startswith("_")]


def test_pipelines_and_schemas_import_nothing_above_them():
    mods = _modules(pipelines) + _modules(schemas)
    assert len(mods) > 10
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"print(','.join(sorted({{k.split('.')[0] for k in sys.modules}} & set({FORBIDDEN!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing pipelines/schemas loaded: {out}"


def test_no_pipelines_or_schemas_source_imports_upward_even_lazily():
    """A function-level import is still an upward arrow (it once hid ``op4ksr:`` in pipelines.upscalers)."""
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
