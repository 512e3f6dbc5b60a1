"""benchmarks/rope_extrapolation.py: its model starts at bicubic, its intervals are Student-t, a run writes every
arm and a rerun resumes from the JSON without training again."""

import json

import pytest
import torch
from benchfixtures import load_benchmark


@pytest.fixture(scope="module")
def rope():
    return load_benchmark("rope_extrapolation")


def test_model_starts_at_bicubic_and_rfr_acts_only_beyond_the_trained_grid(rope):
    model = rope.TokenSR().eval()
    small, big = rope.degrade(rope.images(1, 32, 0)), rope.degrade(rope.images(1, 128, 1))
    with torch.no_grad():
        assert torch.equal(model(big), big)  # zero-initialised output projection: every run starts at bicubic
        torch.nn.init.normal_(model.t.proj_out.weight, std=0.1)
        outs = {}
        for mode in ("none", "yarn"):
            rope.set_rope(model, mode, trained_grid=8)
            outs[mode] = (model(small), model(big))
    assert torch.allclose(outs["none"][0], outs["yarn"][0], atol=1e-6)  # 8 tokens = the trained grid: s = 1
    assert (outs["none"][1] - outs["yarn"][1]).abs().max() > 1e-4  # 32 tokens: s = 4


def test_summary_interval_is_student_t_and_delta_is_paired_by_seed(rope):
    def row(arm, v):
        return {"run_grid": "4g", "arm": arm, "lap": "0", "gain_db": v, "peak": 0.0, "rope_R": 0.0, "grid_R": 0.0}

    # yarn beats none by exactly 0.5 dB in every seed, while the seeds themselves spread by 2 dB
    results = {f"{s}/g": [row("none", v), row("yarn", v + 0.5)] for s, v in enumerate((1.0, 2.0, 3.0))}
    none, yarn = (next(r for r in rope.summarise(results) if r["arm"] == a) for a in ("none", "yarn"))
    assert none["n"] == 3 and none["gain_db"] == pytest.approx(2.0)
    assert none["gain_db_ci"] == pytest.approx(4.30 * 1.0 / 3**0.5, rel=1e-3)  # t(0.975, 2 dof) * sd / sqrt(n)
    assert none["gain_db_seeds"] == [1.0, 2.0, 3.0]
    assert yarn["delta"] == pytest.approx(0.5) and yarn["delta_ci"] == pytest.approx(0.0, abs=1e-12)
    assert none["delta"] == 0.0


def test_tiny_run_writes_every_arm_and_resumes(rope, tmp_path, monkeypatch, capsys):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    argv = [
        "--steps",
        "2",
        "--seeds",
        "1",
        "--eval-images",
        "1",
        "--pool",
        "2",
        "--lap",
        "0.1",
        "--json",
        str(out),
        "--md",
        str(md),
    ]
    assert rope.main(argv) == 0
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"0/g", "0/2g", "0/lap=0.1"}
    arms = {(r["run_grid"], r["arm"], r["lap"]) for r in saved["summary"]}
    for mode in ("none", "pi", "ntk", "yarn-pub", "yarn", "tiled"):
        assert ("4g", mode, "0") in arms and ("2g", mode, "0") in arms
    assert {("4g", "trained@2g none", "0"), ("4g", "trained@2g yarn", "0"), ("4g", "yarn", "0.1")} <= arms
    assert "| 4g | yarn | 0.1 | 1 |" in md.read_text()

    def no_training(*a, **k):
        raise AssertionError("resumed run trained again")

    monkeypatch.setattr(rope, "train", no_training)
    assert rope.main(argv) == 0
    assert "resuming: 3" in capsys.readouterr().out


def test_lap_on_small_crops_warns_and_defaults_follow_the_experiment():
    import warnings

    from training.sr.config import AP_MIN_CROP, TrainConfig

    def cfg(**data):
        return {"model": {"transformer": "t", "vae": "v"}, "data": data}

    default = TrainConfig.model_validate(cfg())
    assert default.model.rfr.mode == "ntk" and default.loss.ap == 1.0 and default.data.crop >= AP_MIN_CROP
    with pytest.warns(UserWarning, match=r"data.crop 128 < 256.*loss.ap=0"):
        TrainConfig.model_validate(cfg(crop=128))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig.model_validate(cfg(crop=256))
        TrainConfig.model_validate(cfg(crop=128) | {"loss": {"ap": 0.0}})
