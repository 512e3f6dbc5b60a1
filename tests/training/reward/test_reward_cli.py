"""`sr4k score`, `sr4k eval-reward` and `sr4k train-reward` through the real CLI app, and the GPU benchmark's CPU
smoke mode."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from refreward_fixtures import pair_images
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[3]


def test_score_ranks_candidates(tiny_judge, tmp_path):
    lr, a, b = pair_images(0)
    paths = []
    for name, arr in (("lr", lr), ("nearest", a), ("noisy", b)):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(arr).save(paths[-1])
    r = runner.invoke(
        app, ["score", "--checkpoint", str(tiny_judge), "--lr", str(paths[0]), str(paths[1]), str(paths[2])]
    )
    assert r.exit_code == 0, r.output
    assert "nearest.png" in r.output and "noisy.png" in r.output and "2 games" in r.output
    r = runner.invoke(app, ["score", "--checkpoint", str(tiny_judge), "--lr", str(paths[0]), str(paths[1])])
    assert r.exit_code == 2 and "at least two candidate" in r.output


def test_eval_reward_writes_a_report(tiny_judge, prefs_workspace, tmp_path):
    r = runner.invoke(
        app,
        [
            "eval-reward",
            "--checkpoint",
            str(tiny_judge),
            "--data",
            str(prefs_workspace),
            "--out",
            str(tmp_path / "ev"),
            "--limit",
            "2",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "position consistency" in r.output and "baseline: lr_psnr" in r.output
    assert (tmp_path / "ev" / "eval.md").exists() and (tmp_path / "ev" / "eval.json").exists()
    # an existing report is never replaced silently ...
    before = (tmp_path / "ev" / "eval.json").read_bytes()
    again = runner.invoke(
        app,
        [
            "eval-reward",
            "--checkpoint",
            str(tiny_judge),
            "--data",
            str(prefs_workspace),
            "--out",
            str(tmp_path / "ev"),
            "--limit",
            "1",
            "--quiet",
        ],
    )
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert (tmp_path / "ev" / "eval.json").read_bytes() == before


def test_eval_reward_default_folder_is_new_each_run(tiny_judge, prefs_workspace, tmp_path):
    import shutil

    ck = tmp_path / "judge"
    shutil.copytree(tiny_judge, ck)
    (ck / "eval").mkdir()
    (ck / "eval" / "eval.json").write_text("{}")  # train-reward's held-out report
    args = ["eval-reward", "--checkpoint", str(ck), "--data", str(prefs_workspace), "--limit", "1", "--quiet"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0
    reports = sorted(p.parent.name for p in (ck / "eval-reward").glob("*/eval.json"))
    assert len(reports) == 2 and len(set(reports)) == 2
    assert (ck / "eval" / "eval.json").read_text() == "{}"


def test_score_bad_inputs_end_in_one_line(tiny_judge, tmp_path):
    lr, a, b = pair_images(0)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b[:-4]).save(tmp_path / "short.png")
    Image.fromarray(lr).save(tmp_path / "tiny.png")
    (tmp_path / "notes.png").write_text("not an image")
    base = ["score", "--checkpoint", str(tiny_judge), "--lr", str(tmp_path / "lr.png"), str(tmp_path / "a.png")]
    for extra, message in (("notes.png", "cannot read an input as an image"), ("short.png", "differ in size")):
        r = runner.invoke(app, [*base, str(tmp_path / extra)])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    Image.fromarray(lr[:7, :7]).save(tmp_path / "tiny.png")
    r = runner.invoke(
        app,
        [
            "score",
            "--checkpoint",
            str(tiny_judge),
            "--lr",
            str(tmp_path / "lr.png"),
            str(tmp_path / "tiny.png"),
            str(tmp_path / "tiny.png"),
        ],
    )
    assert r.exit_code == 2 and "smaller than the LR" in r.output


def test_train_reward_config_errors_name_the_fix(tiny_judge, prefs_workspace, tmp_path):
    base = ["train-reward", "--data", str(prefs_workspace), "--model", str(tiny_judge), "-o", str(tmp_path / "o")]
    r = runner.invoke(app, [*base, "--use-vllm"])
    assert r.exit_code == 2
    assert "use_vllm: false" in r.output and ("sr4k[vllm]" in r.output or "CUDA" in r.output)
    r = runner.invoke(app, [*base, "--num-generations", "3", "--batch-size", "4"])
    assert r.exit_code == 2 and "set per_device_train_batch_size to 6" in r.output
    r = runner.invoke(app, ["train-reward", "--data", str(prefs_workspace), "--model", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "build_tiny_qwen_vl" in r.output


@pytest.mark.slow
def test_gpu_benchmark_runs_in_tiny_mode():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "reward_gpu.py"), "--tiny", "--batch", "1,2", "--repeats", "1"]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "judge rollouts" in r.stdout and "transformers" in r.stdout


@pytest.mark.slow
def test_train_reward_runs_and_evaluates_held_out_pairs(tiny_judge, tmp_path):
    import torch
    from refreward_fixtures import TEST_BUDGET, write_workspace

    torch.set_num_threads(1)
    ws = write_workspace(tmp_path / "ws", n=6)
    cfg = tmp_path / "reward.yaml"
    cfg.write_text(
        "num_generations: 2\nper_device_train_batch_size: 2\nmax_completion_length: 24\nholdout: 0.4\norder: random\n"
        f"pixel_budget: {TEST_BUDGET}\n".replace("'", "")
    )
    out = tmp_path / "judge"
    r = runner.invoke(
        app,
        [
            "train-reward",
            "--data",
            str(ws),
            "--model",
            str(tiny_judge),
            "-c",
            str(cfg),
            "-o",
            str(out),
            "--max-steps",
            "1",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "global_step" in r.output and "held-out evaluation" in r.output
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "eval" / "eval.md").exists()
