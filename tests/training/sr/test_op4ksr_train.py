"""Two-step smoke runs of both OP4KSR stages on a tiny random model and curated-style shards: finite losses, LoRA
weights changed, safetensors-only checkpoints, resume; the GRPO guard rule; the op4ksr: Upscaler."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import webdataset as wds
from op4ksr_fixtures import natural, saved_checkpoint
from safetensors.torch import load_file

from training.sr import grpo, supervised
from training.sr.config import GRPOConfig, TrainConfig


def _cfg(tiny_backbone, tiny_shards, out, **kw) -> TrainConfig:
    t, v = tiny_backbone
    base = {
        "model": {"transformer": str(t), "vae": str(v), "rfr": {"pretrain_grid": 2, "target_grid": 4}},
        "data": {"shards": [str(tiny_shards)], "crop": 64, "batch_size": 1, "shuffle_buffer": 2},
        "steps": 2,
        "out": str(out),
        "log_every": 1,
        "save_every": 2,
        "lr": 1e-3,
    }
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
    assert names == {
        "op4ksr.json",
        "lora.safetensors",
        "text_embeds.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    }
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))
    rfr = json.loads((ck / "op4ksr.json").read_text())["model"]["rfr"]
    assert rfr["trained_grid"] == 2 and rfr["finetune_grid"] == 64 // 32  # what the derived RFR scale is read from
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

    cfg = _cfg(
        tiny_backbone,
        tiny_shards,
        tmp_path / "g",
        stage="grpo",
        **{"grpo.fidelity": 0.5, "grpo.group_size": 2, "grpo.beta_kl": 0.1},
    )
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


def _grpo_cfg(tiny_backbone, tiny_shards, out, **kw) -> TrainConfig:
    """GRPO with the fidelity reward alone (a known simple reward), no KL, no L_AP: only the policy gradient."""
    base = {
        "stage": "grpo",
        "grpo.fidelity": 1.0,
        "grpo.group_size": 4,
        "grpo.beta_kl": 0.0,
        "loss.ap": 0.0,
        "lr": 1e-4,
        "grpo.sigma": 0.2,
    }
    return _cfg(tiny_backbone, tiny_shards, out, **(base | kw))


def test_grpo_update_raises_log_prob_of_positive_advantage_samples(tiny_backbone, tiny_shards, tmp_path):
    """One update must move log π of each sampled action in the direction of its advantage: Σ_i A_i Δlog π_i > 0.
    A flipped policy-gradient sign makes it negative (checked: the test fails with `pg = +min(...)`)."""
    torch.manual_seed(0)
    run = grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, tmp_path / "d"))
    hr, lr = next(run.batches)
    s = grpo.sample(run, hr, lr)
    assert s["zero_spread"] == 0.0 and s["adv"].abs().max() <= run.cfg.grpo.adv_clip
    terms = grpo.update(run, s)
    assert float(terms["ratio_dev"]) < 1e-5  # μ_old and μ under the same autocast: ρ = 1 at the first inner step
    with torch.no_grad():
        mu = run.model.predict_latent(s["state"]).float().repeat_interleave(run.cfg.grpo.group_size, 0)
        delta = grpo.logp(s["action"], mu, run.cfg.grpo.sigma) - s["logp_old"]
    assert float((s["adv"] * delta).sum()) > 0
    # the samples with positive advantage gained probability relative to those with negative advantage
    assert float(delta[s["adv"] > 0].mean()) > float(delta[s["adv"] < 0].mean())


def test_grpo_clip_stops_the_gradient_outside_the_trust_region(tiny_backbone, tiny_shards, tmp_path):
    run = grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, tmp_path / "c"))
    hr, lr = next(run.batches)
    s = grpo.sample(run, hr, lr)
    eps = grpo.clip_eps(run, s["action"][0].numel())
    assert eps == pytest.approx(1e-4 * (65536 / s["action"][0].numel()) ** 0.5)

    def grad_norm(samples) -> float:
        run.optimizer.zero_grad(set_to_none=True)
        grpo.policy_loss(run, samples)["total"].backward()
        return sum(float(p.grad.abs().sum()) for p in run.model.lora_parameters() if p.grad is not None)

    pos = dict(s, adv=torch.ones_like(s["adv"]))
    assert grad_norm(pos) > 0  # inside the trust region: gradient
    assert grad_norm(dict(pos, logp_old=s["logp_old"] - 10 * eps)) == 0  # ρ ≈ 1 + 10ε, A > 0: clipped
    assert grad_norm(dict(pos, logp_old=s["logp_old"] + 10 * eps)) > 0  # ρ ≈ 1 − 10ε, A > 0: the min keeps ρA
    run.optimizer.zero_grad(set_to_none=True)


def test_grpo_guard_history_survives_resume_and_rollback_restores_the_checkpoint(
    tiny_backbone, tiny_shards, tmp_path, monkeypatch
):
    calls = []

    def rising(lrs, groups):  # reward rises every step: with falling LR-consistency that is the hacking signature
        calls.append(1)
        return np.array([[len(calls) + 0.01 * float(x.mean()) for x in g] for g in groups])

    psnr = {"v": 30.0}
    real_stats = grpo.guard_stats
    monkeypatch.setattr(grpo, "guard_stats", lambda s: real_stats(s) | {"lr_psnr": psnr["v"]})
    kw = {
        "grpo.fidelity": 1e-3,
        "grpo.guard_window": 2,
        "grpo.group_size": 2,
        "save_every": 2,
        "lr": 1e-3,
        "grpo.guard_periodicity": 1.0,
    }
    out = tmp_path / "guard"
    run = grpo.train(grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, out, steps=4, **kw), reward=rising))
    assert run.stopped is None and run.good_step == 4
    # resume: the guard's history (the first window it compares against) and good weights come back
    run = grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, out, steps=8, **kw), reward=rising)
    assert run.step == 4 and [h["step"] for h in run.history] == [1, 2, 3, 4] and run.good_step == 4
    good = {k: v.clone() for k, v in run.good.items()}
    psnr["v"] = 20.0  # LR-consistency collapses while the reward keeps rising
    run = grpo.train(run)
    assert run.step == 6 and "reward hacking" in run.stopped
    stopped = json.loads((out / "stopped.json").read_text())
    assert stopped["rolled_back_to_step"] == 4 and stopped["checkpoints_after_good_weights"] == []
    named = dict(run.model.transformer.named_parameters())
    assert all(torch.equal(named[k], v) for k, v in good.items())  # live weights rolled back
    final, ck6, ck4 = (
        load_file(str(out / d / "lora.safetensors")) for d in ("model", "checkpoint-000006", "checkpoint-000004")
    )
    assert _changed(final, ck4) == 0 and _changed(ck6, ck4) == 0  # the latest checkpoint holds the good weights
    # a resume after the stop does not train on
    with pytest.warns(RuntimeWarning, match="stopped by the guard"):
        again = grpo.train(grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, out, steps=8, **kw), reward=rising))
    assert again.step == 6 and again.stopped == run.stopped


def test_grpo_fidelity_is_measured_against_the_clean_lr(tiny_backbone, tiny_shards, tmp_path):
    run = grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, tmp_path / "f"))
    hr, lr = next(run.batches)
    noisy = (lr + 0.3 * torch.randn_like(lr)).clamp(-1, 1)  # a degraded LR the model sees
    s = grpo.sample(run, hr, noisy)
    clean = np.asarray(grpo.to_uint8(torch.nn.functional.avg_pool2d(hr, 4))[0])
    assert np.abs(s["clean"][0].astype(int) - clean.astype(int)).max() == 0
    assert np.abs(s["lrs"][0].astype(int) - clean.astype(int)).mean() > 10  # not the noisy one
    want = grpo.fidelity_reward([clean], s["groups"][:1])
    assert np.allclose(s["reward"][:1], want)


def test_grpo_refuses_a_reward_without_spread(tiny_backbone, tiny_shards, tmp_path):
    """A judge that calls every game a tie gives every sample the same reward: warned each step, refused after
    ZERO_SPREAD_STEPS, before the run trains on zero advantages."""
    tie = grpo.combine_reward(lambda lrs, groups: np.zeros((len(groups), len(groups[0]))), 0.0)
    run = grpo.setup(_grpo_cfg(tiny_backbone, tiny_shards, tmp_path / "z", steps=5), reward=tie)
    with pytest.warns(RuntimeWarning, match="zero spread"), pytest.raises(grpo.ZeroSpreadError, match="sr4k score"):
        grpo.train(run)
    assert run.step == grpo.ZERO_SPREAD_STEPS - 1


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
    from flows.upscalers import get_upscaler
    from pipelines.models.upscalers import Upscaler, timed_upscale

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
