"""benchmarks/training_direction.py end to end at smoke size: every stage of the judge path (align, describe cold
start, GRPO through the recipe, the held-out evaluations) and the SR path run, the JSON carries each seed's figures
and the final line is the one the issue asks for. The directional checks are the recipes' own tests; this one keeps
the benchmark from rotting."""

import json
import re

import pytest
from benchfixtures import load_benchmark


def load():
    return load_benchmark("training_direction")


def test_smoke_run_writes_every_seed_and_the_final_line(tmp_path, capsys):
    td = load()
    out = tmp_path / "td.json"
    argv = ["--seeds", "1", "--sr-steps", "2", "--judge-n", "12", "--align-steps", "2", "--sft-steps", "2"]
    argv += ["--judge-steps", "2", "--judge-batch", "8", "--json", str(out)]
    assert td.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.fullmatch(r"sr_grpo_gain_min=(\S+) judge_acc_before=([\d.]+) judge_acc_after=([\d.]+)", last)
    assert m, last
    rows = json.loads(out.read_text())
    (sr,), (judge,) = rows["sr"], rows["judge"]
    assert float(m.group(1)) == float(f"{sr['gain']:.6g}")
    assert float(m.group(3)) == round(judge["after"], 3)
    assert judge["align_steps"] == 2 and 0 <= judge["caption_accuracy"]["accuracy"] <= 1
    assert judge["cold_start"] == "describe" and judge["description_before"] is not None
    assert judge["verdict_target"] == "uniform"  # the default cold start (formatsft verdict_target)
    assert judge["held_pairs"] + judge["train_pairs"] == 12


def test_lr_verdicts_carry_no_preference_and_the_relation_flags_follow_the_images(tmp_path):
    """The cold start's ``lr`` verdicts agree with the consistency label in exactly half of the mirrored prompts (they
    read the LR only, which both orders share, while the label swaps), yet vary across pairs; the ``relate`` flags
    name the candidate whose colour code is the LR's, so they swap with the screen order."""
    from training.reward.data import load_preferences
    from training.reward.examples import PixelBudget, make_examples

    td = load()
    budget = PixelBudget.model_validate({"global_max_pixels": 28 * 28, "crop_size": 28, "n_crops": 1})
    exs = [
        ex
        for s in load_preferences(td.write_cast_workspace(tmp_path / "ws", n=24, seed=0))
        for ex in make_examples(s, budget, order="mirror")
    ]
    verdicts = [td.lr_verdicts(list(ex.images)) for ex in exs]
    agree = [v[0] == ex.labels["consistency"] for v, ex in zip(verdicts, exs, strict=True)]
    assert sum(agree) * 2 == len(exs) == 48
    assert len({v for v, _ in verdicts}) == 2 and len({n for _, n in verdicts}) == 2
    rel = td.relation_agreement(load_preferences(tmp_path / "ws"), budget.model_dump())
    assert rel["decides_wrong"] == 0 and rel["decides_right"] > 0.5


def test_lr_verdicts_with_a_uniform_verdict_target_is_a_one_line_error(capsys):
    td = load()
    with pytest.raises(SystemExit) as exc:
        td.main(["--sft-verdicts", "lr", "--sft-verdict-target", "uniform"])
    assert exc.value.code == 2
    assert "add --sft-verdict-target draw" in capsys.readouterr().err
