"""Held-out evaluation: accuracy per criterion, position consistency, baselines; end to end on the tiny judge."""

import numpy as np
import pytest

from training.reward.data import load_preferences
from training.reward.evaluate import evaluate_pairs, lr_psnr, report_markdown, write_report


def _faithful_is_a(lr, a, b):
    """Knows the truth of the fixture pairs: the nearest upscale (no noise) is faithful; naturalness: say tie."""
    down = np.asarray(a)[::4, ::4]
    first_faithful = np.array_equal(down, np.asarray(lr))
    return {"consistency": "A" if first_faithful else "B", "naturalness": "tie"}


def test_exact_numbers_with_known_judges(prefs_workspace):
    samples = load_preferences(prefs_workspace)  # 4 pairs: consistency "a" on all; naturalness b, tie, b, tie
    r = evaluate_pairs(_faithful_is_a, samples)
    assert r["n_pairs"] == 4
    assert r["judge"]["consistency"]["accuracy"] == 1.0
    assert r["judge"]["consistency"]["position_consistency"] == 1.0
    assert r["judge"]["naturalness"]["accuracy"] == 0.5  # right on the two ties only
    assert r["judge"]["naturalness"]["malformed"] == 0.0

    r = evaluate_pairs(lambda lr, a, b: {"consistency": "A", "naturalness": "A"}, samples, baselines=False)
    c = r["judge"]["consistency"]
    assert (c["accuracy_ab"], c["accuracy_ba"], c["accuracy"]) == (1.0, 0.0, 0.5)  # pure position bias
    assert c["position_consistency"] == 0.0

    r = evaluate_pairs(lambda lr, a, b: None, samples, baselines=False)
    assert r["judge"]["consistency"]["malformed"] == 1.0 and r["judge"]["consistency"]["accuracy"] == 0.0


def test_baselines_on_the_same_pairs(prefs_workspace):
    r = evaluate_pairs(_faithful_is_a, load_preferences(prefs_workspace))
    b = r["baselines"]
    assert b["lr_psnr"]["consistency"] == 1.0  # a re-downscales exactly to the LR
    assert b["sharpness"]["consistency"] == 0.0 or b["hf_energy"]["consistency"] == 0.0  # noise looks "sharper"
    assert b["majority"] == {"consistency": 1.0, "naturalness": 0.5}
    md = report_markdown(r)
    assert "| lr_psnr | 1.000 |" in md and "| consistency | 1.000 |" in md


def test_lr_psnr_prefers_the_faithful_candidate():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    faithful = np.kron(lr, np.ones((4, 4, 1), np.uint8))
    shifted = np.roll(faithful, 3, axis=1)
    assert lr_psnr(lr, faithful) == pytest.approx(100.0) and lr_psnr(lr, shifted) < 30


def test_tiny_model_end_to_end(tiny_judge, prefs_workspace, tmp_path):
    from training.reward.judge import load_judge

    judge = load_judge(tiny_judge, device="cpu", max_new_tokens=24)
    done = []
    r = evaluate_pairs(judge, load_preferences(prefs_workspace)[:2], batch_size=2, progress=done.append)
    assert done == [2] and r["n_pairs"] == 2
    for m in r["judge"].values():
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["malformed"] <= 1.0
    js, md = write_report(r, tmp_path / "eval")
    assert js.exists() and md.read_text().startswith("# RefReward evaluation")


def test_the_one_evaluation_path_selects_the_pairs_asked_for(tiny_judge, prefs_workspace):
    """recipe.evaluate_judge (train-reward's held-out pairs, eval-reward, the reward flows): only ``pair_ids``, in
    the data's order, then the first ``limit``; a missing checkpoint is named."""
    from training.reward import recipe

    ids = [s.rec.pair_id for s in load_preferences(prefs_workspace)]
    picked = [ids[2], ids[0]]
    r = recipe.evaluate_judge(tiny_judge, prefs_workspace, picked, device="cpu", baselines=False)
    assert [row["pair_id"] for row in r["pairs"]] == [ids[0], ids[2]] and r["n_pairs"] == 2
    r = recipe.evaluate_judge(tiny_judge, prefs_workspace, device="cpu", limit=1, baselines=False)
    assert [row["pair_id"] for row in r["pairs"]] == ids[:1]
    with pytest.raises(FileNotFoundError, match="nope is not a judge checkpoint"):
        recipe.evaluate_judge(prefs_workspace / "nope", prefs_workspace)
