"""The reward flows against a real local Prefect API: train (1 step) + held-out evaluation, written to disk."""

import pytest
from refreward_fixtures import TEST_BUDGET, write_workspace


@pytest.mark.slow
def test_reward_train_flow_trains_and_evaluates(prefect_local, tiny_judge, tmp_path):
    import torch

    from flows.reward import reward_eval_flow, reward_train_flow

    torch.set_num_threads(1)
    ws = write_workspace(tmp_path / "ws", n=6)
    config = {
        "model": str(tiny_judge),
        "data": str(ws),
        "output_dir": str(tmp_path / "judge"),
        "num_generations": 2,
        "per_device_train_batch_size": 2,
        "max_steps": 1,
        "max_completion_length": 24,
        "holdout": 0.4,
        "pixel_budget": TEST_BUDGET,
        "order": "random",
    }
    s = reward_train_flow(config)
    assert s["global_step"] == 1 and s["held_out"] and "log_history" not in s
    assert s["eval"]["n_pairs"] == len(s["held_out"])
    assert (tmp_path / "judge" / "final" / "eval" / "eval.md").exists()
    e = reward_eval_flow(s["final"], str(ws), str(tmp_path / "ev"))
    assert e["n_pairs"] == 6 and (tmp_path / "ev" / "eval.json").exists()
