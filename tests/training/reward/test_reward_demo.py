"""The demo step: tiny judge, a few GRPO steps on a workspace's preferences, a scored candidate set."""

import json
import math

import pytest
from refreward_fixtures import write_workspace

from training.reward import demo


@pytest.mark.slow
def test_demo_trains_and_scores(tmp_path):
    ws = write_workspace(tmp_path / "ws", n=4)
    out = demo.run(ws, steps=1)
    assert out["global_step"] == 1 and math.isfinite(out["train_loss"])
    assert [m for m, _ in out["ranking"]] and {m for m, _ in out["ranking"]} == {"nearest", "noisy"}
    assert out["games"] == 2  # two candidates, both orders
    assert json.loads((ws / "reports" / "refreward-demo.json").read_text())["lr_key"] == out["lr_key"]
    again = demo.run(ws, steps=1)  # rerun: resumes at the last checkpoint, nothing left to train
    assert again["global_step"] == 1
