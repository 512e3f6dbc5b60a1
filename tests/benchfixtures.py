"""Test helpers for hostile benchmarks and CLI refusals, shared by the pipeline and flow tests."""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq

from pipelines.bench import sets as benchsets
from pipelines.store.workspace import write_table

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the scripts are not a package), registered in ``sys.modules`` under
    ``name`` so its dataclasses and pickling resolve."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def forge_index(bench: Path, **row: object) -> None:
    """Rewrite the first index row with ``row`` and re-hash the manifest, as someone forging a benchmark would."""
    rows = pq.read_table(bench / "index.parquet").to_pylist()
    rows[0] |= row
    write_table(bench / "index.parquet", [benchsets.BenchItem(**r) for r in rows], benchsets.BENCH_INDEX)
    manifest = json.loads((bench / "manifest.json").read_text())
    manifest["files"]["index.parquet"] = hashlib.sha256((bench / "index.parquet").read_bytes()).hexdigest()
    (bench / "manifest.json").write_text(json.dumps(manifest))


def one_line_error(res) -> str:
    """The error: one line, the last of the output (a notice such as Prefect's start-up line may come before)."""
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and lines[-1] == errors[0], res.output
    assert "Traceback" not in res.output, res.output
    return errors[0]
