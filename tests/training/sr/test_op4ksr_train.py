"""Two-step smoke runs of both OP4KSR stages on a tiny random model and curated-style shards: finite losses, LoRA
weights changed, safetensors-only checkpoints, resume; the GRPO guard rule; the op4ksr: Upscaler."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import webdataset as wds
from op4ksr_fixtures import natural, saved_checkpoint
from safetensors.torch import load_file

from training.sr import grpo, supervised
from training.sr.config import GRPOConfig, TrainConfig


def _cfg(tiny_backbone, tiny_shards, out, **kw) -> TrainConfig:
    t, v = tiny_backbone
    base = {"model": {"transformer": str(t), "vae": str(v), "rfr": {"pretrain_grid": 2, "target_grid": 4}},
            "data": {"shards": [str(tiny_shards)], "crop": 64, "batch_size": 1, "shuffle_buffer": 2},
            "steps": 2, "out": str(out), "log_every": 1, "save_every": 2, "lr": 1e-3}  # fmt: skip
    for k, val in kw.items():
        node = base
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = val
    return TrainConfig.model_validate(base)


def _changed(before: dict, after: dict) -> float:
    return sum((before[k] - after[k]).abs().sum().item() for k in before)


def test_shards_read_back_with_webdataset(tiny_shards):
    sample = next(iter(wds.WebDataset(str(tiny_shards / "train-000000.tar"), shardshuffle=False)))
    assert {"hr.png", "lr.png", "json"} <= set(sample)


def test_supervised_two_steps_then_resume(tiny_backbone, tiny_shards, tmp_path):
    cfg = _cfg(tiny_backbone, tiny_shards, tmp_path / "s1", **{"loss.ap": 1.0})
    run = supervised.setup(cfg)
    before = run.model.lora_state_dict()
    run = supervised.train(run)
    assert run.step == 2 and len(run.history) == 2
    assert all(np.isfinite(r["total"]) and "ap" in r for r in run.history)
    assert _changed(before, run.model.lora_state_dict()) > 0
    hr = natural(128, 128, 9)
    scores = supervised.evaluate(run.model, [(hr, hr[::4, ::4].copy())])
    assert set(scores) == {"psnr_y", "peak", "stride_mean"} and 5 < scores["psnr_y"] < 60
    ck = tmp_path / "s1" / "checkpoint-000002"
    names = {p.name for p in ck.iterdir()}
    assert names == {"op4ksr.json", "lora.safetensors", "text_embeds.safetensors", "optimizer.safetensors",
                     "trainer_state.json"}  # fmt: skip
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))
    # resume: a 3-step run in the same folder starts at step 2 with the saved optimizer state
    run2 = supervised.setup(_cfg(tiny_backbone, tiny_shards, tmp_path / "s1", steps=3, **{"loss.ap": 1.0}))
    assert run2.step == 2
    assert _changed(run.model.lora_state_dict(), run2.model.lora_state_dict()) == 0
    state = run2.optimizer.state_dict()["state"]
    assert all(int(s["step"]) == 2 for s in state.values())
    run2 = supervised.train(run2)
    assert run2.step == 3 and len(run2.history) == 1
    logged = [json.loads(line)["step"] for line in (tmp_path / "s1" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]


def _judge(lr, a, b):
    """A deterministic pairwise judge: consistency = closer area-downscale to the LR, naturalness = more detail."""
    fa, fb = grpo.fidelity_reward([lr], [[a, b]])[0]
    da, db = (float(np.abs(np.diff(x.astype(np.float32), axis=1)).mean()) for x in (a, b))
    return {"consistency": "A" if fa > fb else "B" if fb > fa else "tie", "naturalness": "A" if da > db else "B"}


def test_grpo_two_steps_with_refreward_scorer(tiny_backbone, tiny_shards, tmp_path):
    from training.reward.scorer import RefRewardScorer

    calls = []

    def judge(lr, a, b):
        calls.append(lr.shape)
        return _judge(lr, a, b)

    cfg = _cfg(tiny_backbone, tiny_shards, tmp_path / "g", stage="grpo", **{"grpo.fidelity": 0.5,
               "grpo.group_size": 2, "grpo.beta_kl": 0.1})  # fmt: skip
    run = grpo.setup(cfg, reward=grpo.combine_reward(RefRewardScorer(judge), cfg.grpo.fidelity))
    before = run.model.lora_state_dict()
    run = grpo.train(run)
    assert len(calls) == 2 * 2 * 1  # 2 steps x G(G-1) ordered games, G = 2
    assert run.step == 2 and all(np.isfinite(r["total"]) for r in run.history)
    assert {"reward", "lr_psnr", "periodicity", "kl", "ratio"} <= set(run.history[-1])
    assert run.history[0]["kl"] == pytest.approx(0.0, abs=1e-9) and run.history[1]["kl"] > 0  # moved off pi_ref
    assert _changed(before, run.model.lora_state_dict()) > 0
    saved = load_file(str(tmp_path / "g" / "model" / "lora.safetensors"))
    assert _changed(before, saved) > 0


def test_grpo_reward_as_plain_callable():
    r = grpo.combine_reward(lambda lrs, groups: np.array([[1.0, 2.0]]), 0.0)
    lr = natural(8, 8, 0)
    assert r([lr], [[lr, lr]]).tolist() == [[1.0, 2.0]]


def test_fidelity_reward_prefers_lr_consistent_outputs():
    lr = natural(16, 16, 1)
    good = np.repeat(np.repeat(lr, 4, 0), 4, 1)
    bad = np.clip(good.astype(int) + 40, 0, 255).astype(np.uint8)
    r = grpo.fidelity_reward([lr], [[good, bad]])
    assert r.shape == (1, 2) and r[0, 0] == 0.0 and r[0, 1] < -0.1


def _history(rewards, psnrs, periods):
    return [{"reward": r, "lr_psnr": p, "periodicity": q} for r, p, q in zip(rewards, psnrs, periods, strict=True)]


def test_guard_stops_reward_hacking_and_periodic_artefacts():
    g = GRPOConfig(guard_window=3, guard_psnr_drop=1.0, guard_periodicity=0.004)
    run = SimpleNamespace(cfg=SimpleNamespace(grpo=g), history=[])
    run.history = _history([0.1] * 3 + [0.2] * 3, [30.0] * 3 + [31.0] * 3, [0.001] * 6)
    assert grpo.guard(run) is None  # reward and consistency both up: fine
    run.history = _history([0.1] * 3 + [0.5] * 3, [30.0] * 3 + [28.0] * 3, [0.001] * 6)
    assert "reward hacking" in grpo.guard(run)
    run.history = _history([0.1] * 6, [30.0] * 6, [0.001] * 3 + [0.02] * 3)
    assert "periodic" in grpo.guard(run)
    run.history = run.history[:5]
    assert grpo.guard(run) is None  # only whole windows are compared


def test_op4ksr_upscaler(tiny_backbone, tmp_path):
    from pipelines.upscalers import Upscaler, get_upscaler, timed_upscale

    saved_checkpoint(tiny_backbone, tmp_path / "ck")
    up = get_upscaler(f"op4ksr:{tmp_path / 'ck'}", 4)
    assert isinstance(up, Upscaler) and up.scale == 4 and up.version.startswith("op4ksr:")
    sr, seconds, _ = timed_upscale(up, natural(24, 40, 0))
    assert sr.shape == (96, 160, 3) and seconds > 0
    assert get_upscaler(f"op4ksr:{tmp_path / 'ck'}", 4).version == up.version
    with pytest.raises(ValueError, match="x4"):
        get_upscaler(f"op4ksr:{tmp_path / 'ck'}", 2)
    with pytest.raises(FileNotFoundError):
        get_upscaler(f"op4ksr:{tmp_path / 'missing'}", 4)
