"""The two GPU benchmark scripts run as ``python benchmarks/<x>.py`` where only torch, transformers and peft (with
their own dependencies) plus the wheels each script names are installed — not the sr4k package.

What this proves, and what not: the scripts run under ``python -S`` (no site-packages, so neither the editable
sr4k install nor anything else of the app venv is importable) with ``PYTHONPATH`` = a folder holding links to
exactly those distributions (the dependency closure read from their metadata, not guessed), from a working
directory outside the repository, in their ``--tiny`` CPU mode. So an import of anything else (pyarrow through
``schemas``, prefect, rich outside transformers' closure, the ``training`` package via the editable install) fails
here as it would on the GPU machine. It does not prove the CUDA code paths, nor that the named wheels install on that
machine's Python (same 3.11 here), nor the torch build there.
"""

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ("torch", "transformers", "peft")


def _name(req: str) -> str | None:
    from packaging.requirements import Requirement

    r = Requirement(req)
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        return None
    return r.name


def _closure(names) -> dict[str, object]:
    seen: dict[str, object] = {}
    todo = list(names)
    while todo:
        n = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if n in seen:
            continue
        try:
            d = distribution(n)
        except PackageNotFoundError:
            continue  # an optional platform dependency this machine does not have (e.g. CUDA libraries)
        seen[n] = d
        todo += [x for x in map(_name, d.requires or []) if x]
    return seen


def _top_levels(d) -> set[str]:
    """Top-level modules/packages of a distribution, and its .dist-info (importlib.metadata checks read it)."""
    tops = set()
    for f in d.files or []:
        first = f.parts[0]
        if first.endswith((".egg-info", ".pth")) or first in ("..", "__pycache__", "bin"):
            continue
        tops.add(first)
    return tops


def _isolated_site(tmp: Path, wheels: tuple[str, ...]) -> Path:
    site = tmp / "site"
    site.mkdir()
    for d in _closure(BASE + wheels).values():
        src_root = Path(d.locate_file(""))
        for top in _top_levels(d):
            src = src_root / top
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    return site


def _run(script: str, wheels: tuple[str, ...], args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    site = _isolated_site(tmp_path, wheels)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-S", str(ROOT / "benchmarks" / script), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def _wheels(script: str) -> tuple[str, ...]:
    """The WHEELS tuple a script declares (read from its source, so the test checks the list the script prints)."""
    text = (ROOT / "benchmarks" / script).read_text()
    m = re.search(r"^WHEELS = \(([^)]*)\)", text, re.M)
    assert m, f"{script} must declare WHEELS = (...)"
    return tuple(re.findall(r'"([^"]+)"', m.group(1)))


def test_isolation_hides_the_project_and_the_app_venv(tmp_path):
    site = _isolated_site(tmp_path, ())
    env = {"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")}
    names = ("training", "pyarrow", "prefect", "diffusers", "torch")
    code = f"import importlib.util as u; print([n for n in {names!r} if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "['torch']", out.stderr


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("op4ksr_gpu.py", ["--tiny", "--size", "64", "--repeats", "1"], "patch-free"),
        ("reward_gpu.py", ["--tiny", "--batch", "1", "--new-tokens", "4", "--repeats", "1"], "tokens/s"),
    ],
)
def test_gpu_script_runs_without_the_project_installed(script, args, expect, tmp_path):
    res = _run(script, _wheels(script), args, tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert expect in res.stdout


def test_a_missing_wheel_is_named_in_one_line(tmp_path):
    res = _run("op4ksr_gpu.py", (), ["--tiny", "--size", "64"], tmp_path)  # without diffusers/pydantic/...
    assert res.returncode == 2
    assert "missing" in res.stdout and "diffusers" in res.stdout and "Traceback" not in res.stderr
