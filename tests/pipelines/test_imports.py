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
