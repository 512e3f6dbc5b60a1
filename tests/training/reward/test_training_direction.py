"""benchmarks/training_direction.py end to end at smoke size: every stage of the judge path (align, describe cold
start, GRPO through the recipe, the held-out evaluations) and the SR path run, the JSON carries each seed's figures
and the final line is the one the issue asks for. The directional checks are the recipes' own tests; this one keeps
the benchmark from rotting."""

import importlib.util
import json
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "training_direction.py"


def load():
    spec = importlib.util.spec_from_file_location("training_direction", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    assert judge["held_pairs"] + judge["train_pairs"] == 12
