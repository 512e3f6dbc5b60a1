"""``sr4k demo`` as a Prefect flow of flows, and its inputs.

:func:`demo_flow` runs the whole path on real photographs with small, fast settings, each stage as the flow its own
command runs (a subflow, so the Prefect UI shows one demo run with a child run per stage): curate -> benchmarks
(build, evaluate) -> candidates -> pairs -> labelling (simulated annotators in a real Label Studio) -> aggregate ->
preferences release -> RefReward (``reward-train``, tiny random judge) -> OP4KSR (``train-sr``, tiny random model) ->
its benchmark. The glue between stages (demo inputs, the curation report, ``labelling.simulate``'s annotators, the
tiny models, scoring and upscaling) runs as tasks. ``sr4k demo`` is a thin wrapper that prints each stage's table as
it ends.

Demo inputs: real photographs from the machine, plus a few broken files so every reject path shows up.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

MATE = Path("/usr/share/backgrounds/mate")


def prepare_demo_input(dest: Path) -> tuple[str, dict]:
    """Fill ``dest`` with demo sources; return (description, curate config overrides)."""
    dest.mkdir(parents=True, exist_ok=True)
    if MATE.is_dir():
        for f in sorted(MATE.rglob("*")):
            if f.is_file():
                target = dest / f.relative_to(MATE)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    shutil.copy2(f, target)
        first_photo = sorted((dest / "nature").glob("*.jpg"))[0]
        desc, overrides = "Debian mate-backgrounds wallpapers", {"hr_size": "1024", "filters.min_short_side": 1024}
    else:
        from skimage import data

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
            path = dest / "photos" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img = getattr(data, name)()
            Image.fromarray(img if img.ndim == 3 else np.stack([img] * 3, -1)).save(path)
        first_photo = dest / "photos" / "astronaut.png"
        desc = "scikit-image's bundled photos"
        overrides = {"hr_size": "256", "filters.min_short_side": 256, "_photos": "photos"}
    broken = dest / "broken"
    broken.mkdir(exist_ok=True)
    data_bytes = first_photo.read_bytes()
    (broken / "truncated.jpg").write_bytes(data_bytes[: len(data_bytes) // 3])
    (broken / "notes.jpg").write_text("this is a text file with an image extension\n")
    (broken / "empty.png").write_bytes(b"")
    (first_photo.parent / f"copy-of-{first_photo.name}").write_bytes(data_bytes)  # an exact duplicate
    return desc, overrides


def how_to_label(out: Path) -> str:
    """What a person runs to label the demo's pairs in a browser (the simulated answers are in project
    ``demo-sim``; this pushes the same pairs into the default project ``pairs``, which the annotator lands on)."""
    import shlex

    w = shlex.quote(str(out))
    return "\n".join(
        [
            "label the demo pairs yourself (Label Studio on 127.0.0.1, your browser):",
            f"  sr4k label serve -w {w}",
            f"  sr4k label add-annotator you@lab.org --show-password -w {w}    # prints url: and password:",
            f"  sr4k label push --pairs demo --overlap 1 -w {w}",
            "  open the url and log in; keys 1/2/3 and 4/5/6 answer (Left/Right/Tie),",
            "  F swaps Left and Right in place, Ctrl+Enter submits the pair",
            f"  sr4k label pull -w {w}; sr4k label stop -w {w}",
        ]
    )


# ---------------------------------------------------------------------------------------------------- the flow

DEMO_MODELS = [
    "bicubic",
    "lanczos",
    "realesr-animevideov3-x4",
    "realesrgan-x4plus",
    "realcugan-x4-conservative",
    "srmd-x4",
    "span-kendata-x4",
]
"""The demo's candidates: one model per real SR family that runs here in seconds on the CPU."""

Show = Callable[[str, dict[str, Any]], None]


@task(name="demo-input")
def _demo_input(dest: str) -> tuple[str, dict]:
    return prepare_demo_input(Path(dest))


@task(name="curation-report")
def _curation_report(workspace: str) -> str:
    from pipelines.curate.report import write_report

    return str(write_report(Path(workspace)))


@task(name="simulated-labelling")
def _labelling(workspace: str, lr_set: str, pairs: str) -> dict:
    from labelling.simulate import simulate_labelling

    return simulate_labelling(Path(workspace), lr_set, pairs=pairs)


@task(name="refreward-demo-judge")
def _reward_config(workspace: str, steps: int) -> dict:
    from training.reward import demo

    return demo.prepare(workspace, steps).model_dump(mode="json")


@task(name="refreward-demo-score", cache_policy=NO_CACHE)
def _reward_score(workspace: str, config: dict, summary: dict) -> dict:
    from training.reward import demo
    from training.reward.config import RewardConfig

    return demo.score_group(workspace, RewardConfig.model_validate(config), summary)


@task(name="op4ksr-demo-model")
def _sr_config(workspace: str, steps: int) -> dict:
    from training.sr import demo

    return demo.prepare(workspace, steps=steps)


@task(name="op4ksr-demo-upscale")
def _sr_upscale(workspace: str, model: str) -> dict:
    from training.sr import demo

    return demo.upscale_first(workspace, model)


@flow(name="demo")
def demo_flow(out: str, show_progress: bool = True, show: Show | None = None) -> dict[str, Any]:
    """Run the demo into the workspace ``out`` (module docstring); ``show(stage, result)`` is called as each stage
    ends (the CLI prints its table). Returns every stage's result by stage name."""
    from flows.bench import bench_build_flow, bench_eval_flow
    from flows.candidates import candidates_flow, pairs_flow
    from flows.curate import curate_flow, make_task_runner
    from flows.release import aggregate_flow, release_flow
    from flows.reward import reward_train_flow
    from flows.train import train_sr_flow
    from pipelines.curate.build import CurateConfig
    from pipelines.store.settings import load_settings
    from pipelines.store.workspace import Workspace

    results: dict[str, Any] = {}

    def done(stage: str, result: dict[str, Any]) -> None:
        results[stage] = result
        if show:
            show(stage, result)

    ws = Path(out)
    sources, overrides = _demo_input(str(ws / "demo-input"))
    done("input", {"sources": sources, "workspace": out})
    cfg = load_settings(CurateConfig, None, {k: v for k, v in overrides.items() if k[0] != "_"}, what="demo curate")
    curate = curate_flow.with_options(task_runner=make_task_runner("threads"))
    done("curate", curate(input=str(ws / "demo-input"), out=out, cfg=cfg, show_progress=show_progress))
    done("curation-report", {"report": _curation_report(out), "workspace": out})

    photos = str(ws / "demo-input" / overrides.get("_photos", "nature"))
    hr = int(overrides["hr_size"]) // 2
    syn = {"kind": "synthetic", "name": "demo-syn", "src": photos, "count": 4, "hr_size": (hr, hr), "scale": 4}
    lq = {"kind": "lr_only", "name": "demo-lq", "lr": photos, "square": hr // 4, "scale": 4}
    for bench in (syn, lq):
        summary = bench_build_flow(workspace=out, **bench)
        done(f"bench-build {bench['name']}", {"name": bench["name"], "kind": bench["kind"], "summary": summary})
    for name in ("demo-syn", "demo-lq"):
        result = bench_eval_flow(out, name, ["bicubic", "lanczos"], show_progress=show_progress)
        done(f"bench-eval {name}", {"bench": name, "token_stride": 32, **result})

    done("candidates", candidates_flow(out, "demo-syn", DEMO_MODELS, 4, 2, show_progress=show_progress))
    done("pairs", {"strategy": "balanced"} | pairs_flow(out, 12, "balanced", 0, lr_set="demo-syn", name="demo"))
    done("labelling", _labelling(out, "demo-syn", "demo"))

    done("aggregate", aggregate_flow(workspace=out, exclude=None, policy=True, bootstrap=200, seed=0))
    release = Workspace(out).release_dir("demo-prefs", "0.1.0")
    if release.exists():  # releases are immutable: a rerun keeps the first
        done("release", {"exists": str(release)})
    else:
        what = {"kind": "preferences", "name": "demo-prefs", "version": "0.1.0"}
        done("release", what | release_flow(workspace=out, **what, max_count=1000, max_bytes=2 << 30))

    reward_cfg = _reward_config(out, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' gradient_checkpointing renames, not ours
        trained = reward_train_flow(reward_cfg, evaluate=False)
    done("reward", _reward_score(out, reward_cfg, trained))

    sr_cfg = _sr_config(out, 2)
    t0 = time.perf_counter()
    sr = train_sr_flow(sr_cfg)
    train_s = time.perf_counter() - t0
    up = _sr_upscale(out, sr["model"])
    done("op4ksr", {"steps": sr["steps"], "loss": sr["last"]["total"], "train_seconds": train_s, **up})
    result = bench_eval_flow(out, "demo-syn", ["bicubic", f"op4ksr:{sr['model']}"], show_progress=show_progress)
    done("bench-eval op4ksr", {"bench": "demo-syn", "token_stride": 32, **result})
    return results
