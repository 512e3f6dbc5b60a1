"""The GRPO recipe on a tiny random Qwen2.5-VL on CPU with images: 2 steps, resume, LoRA; config errors."""

import json

import pytest
import torch
from refreward_fixtures import TEST_BUDGET
from safetensors.torch import load_file

from training.reward import recipe
from training.reward.config import ConfigError, RewardConfig, check_runtime, load_config


def _cfg(model, data, out, **kw):
    base = {
        "model": str(model),
        "data": str(data),
        "output_dir": str(out),
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "max_completion_length": 64,
        "holdout": 0.0,
        "order": "mirror",
        "pixel_budget": TEST_BUDGET,
        "learning_rate": 1e-3,
        "save_steps": 1,
        "temperature": 1.0,
    }
    # 2 prompts x 2 rollouts x 64 tokens per step: a random tiny model emits a format tag often enough that some
    # group's rewards differ (a reward constant across every group gives no gradient)
    base.update(kw)
    return load_config(None, base)


def _changed(before: dict, after: dict) -> list[str]:
    return [k for k in before if k in after and not torch.equal(before[k], after[k])]


@pytest.fixture(scope="module")
def full_run(tiny_judge, prefs_workspace, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("grpo-full")
    return out, recipe.train(_cfg(tiny_judge, prefs_workspace, out))


def test_two_grpo_steps_change_the_model(full_run, tiny_judge):
    out, s = full_run
    assert s["global_step"] == 2 and s["steps_run"] == 2 and s["device"] == "cpu"
    losses = [h["loss"] for h in s["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(map(lambda x: x == x and abs(x) < 1e6, losses))  # finite
    before, after = load_file(tiny_judge / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    changed = _changed(before, after)
    # saved under the hub checkpoint names: "model.*" = language model, "visual.*" = vision tower (frozen)
    assert any(k.startswith("model.layers.") for k in changed)
    assert not any("visual" in k for k in changed) and any("visual" in k for k in before)
    meta = json.loads((out / "final" / "refreward.json").read_text())
    assert meta["pixel_budget"] == {**meta["pixel_budget"], **TEST_BUDGET} and meta["global_step"] == 2
    ckpt = out / "checkpoint-2"
    assert (ckpt / "model.safetensors").exists()
    assert not list(out.rglob("pytorch_model*.bin"))  # weights only as safetensors


def test_resume_from_the_last_checkpoint(full_run, tiny_judge, prefs_workspace):
    out, _ = full_run
    s = recipe.train(_cfg(tiny_judge, prefs_workspace, out, max_steps=3))
    assert s["resumed_from"].endswith("checkpoint-2")
    assert s["global_step"] == 3 and s["steps_run"] == 1


def test_lora_score_variant(tiny_judge, prefs_workspace, tmp_path):
    cfg = _cfg(tiny_judge, prefs_workspace, tmp_path, lora=True, lora_r=4, lora_alpha=8, answer="score", beta=0.0)
    s = recipe.train(cfg)
    assert s["global_step"] == 2
    assert any(k.startswith("rewards/thurstone_reward") for k in s["log_history"][0])
    adapter = load_file(tmp_path / "checkpoint-2" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # B starts at 0: it learned
    merged, base = load_file(tmp_path / "final" / "model.safetensors"), load_file(tiny_judge / "model.safetensors")
    assert _changed(base, merged)  # the adapters are merged into the saved judge
    assert not any("lora_" in k for k in merged)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"num_generations": 1}, "set num_generations ≥ 2"),
        ({"per_device_train_batch_size": 3}, "set per_device_train_batch_size to 4"),
        ({"use_vllm": True, "device": "cpu"}, "set use_vllm: false"),
        ({"bf16": True, "device": "cpu"}, "set bf16: false"),
        ({"max_completion_length": 8}, "set it ≥ 24"),
        ({"pixel_budget": {"crop_size": 30}}, "set it to 28"),
        ({"num_generation": 4}, "num_generation"),
    ],
)
def test_bad_settings_fail_at_start_with_the_fix(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, {"model": "m", "num_generations": 2, "per_device_train_batch_size": 2, **override})
    assert message in str(e.value)


def test_runtime_checks_name_the_fix(tiny_judge, prefs_workspace, tmp_path):
    import importlib.util

    with pytest.raises(ConfigError, match="build_tiny_qwen_vl"):
        check_runtime(RewardConfig(model=str(tmp_path / "missing")))
    cfg = RewardConfig(model=str(tiny_judge), use_vllm=True)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(
            ConfigError, match=r"not installed: install vLLM .*pip install 'sr4k\[vllm\]'.*use_vllm: false"
        ):
            check_runtime(cfg)
    elif not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="use_vllm: false"):
            check_runtime(cfg)
    # the tiny processor stops at 448² px: a 896² budget would be resized behind the judge's back
    big = _cfg(
        tiny_judge, prefs_workspace, tmp_path / "o", pixel_budget={"global_max_pixels": 896 * 896, "crop_size": 448}
    )
    with pytest.raises(ConfigError, match="max_pixels=200704"):
        recipe.setup(big)


def _sequence_logps(trainer, batch) -> torch.Tensor:
    """Σ_t log π(completion token t) per completion, under the trainer's current model (TRL's own forward)."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    keep = ("pixel_values", "image_grid_thw", "num_images")
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, batch["completion_ids"].size(1), **{k: batch.get(k) for k in keep}
        )
    return (logps * batch["completion_mask"]).sum(1)


def test_grpo_step_raises_log_prob_of_positive_advantage_completions(tiny_judge, prefs_workspace, tmp_path):
    """After one GRPO step, Σ_i A_i Δlog π(completion_i) > 0 (dapo: the token-sum objective): the judge moved
    toward the completions our rewards scored above their group. A flipped policy-gradient sign (checked by
    negating TRL's loss) makes it negative. It uses the trainer's own advantages, so it cannot see a label mapped to
    the wrong screen position: test_the_trainers_rewards_favour_the_candidate_the_humans_preferred checks that."""
    cfg = _cfg(
        tiny_judge, prefs_workspace, tmp_path, max_steps=1, beta=0.0, learning_rate=1e-4, save_steps=100, seed=3
    )
    s = recipe.setup(cfg)
    trainer, seen = s.trainer, []
    generate = trainer._generate_and_score_completions

    def capture(inputs):
        out = generate(inputs)
        seen.append((out, _sequence_logps(trainer, out)))
        return out

    trainer._generate_and_score_completions = capture
    trainer.train()
    assert seen
    adv = torch.cat([b["advantages"] for b, _ in seen])
    delta = torch.cat([_sequence_logps(trainer, b) - before for b, before in seen])
    assert adv.abs().sum() > 0, "no reward spread in any group: the test would be vacuous"
    assert float((adv * delta).sum()) > 0


def _slot_of_faithful(row) -> str:
    """Which screen position shows the fixture's candidate a (the faithful nearest upscale), found from pixels alone:
    the native crop of the first-shown candidate (image 5 of the prompt) is a window of candidate a's own array,
    regenerated by the fixture, or it is not."""
    import numpy as np
    from refreward_fixtures import pair_images

    _, a, _ = pair_images(int(row["pair_id"].removeprefix("pair")))
    crop = np.asarray(row["images"][4].convert("RGB"))
    k = crop.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(a, (k, k, 3))[..., 0, :, :, :]
    return "A" if (windows == crop).all(axis=(-3, -2, -1)).any() else "B"


@pytest.mark.parametrize("weighting", ["votes", "label"])
def test_the_trainers_rewards_favour_the_candidate_the_humans_preferred(
    weighting, tiny_judge, prefs_workspace, tmp_path
):
    """The A/B mapping end to end, judged from image content: in every prompt row the recipe trains on (both
    orders), the completion naming the screen position of the faithful candidate (humans: consistency "a", 2 of 3
    votes) earns more from the trainer's own weighted rewards than the one naming the other position. Checked to
    fail when the images are shown in the other order than the labels (both weightings) and when
    ``examples.to_screen`` maps a label the wrong way round (the "label" weighting; "votes" reads the votes)."""
    s = recipe.setup(_cfg(tiny_judge, prefs_workspace, tmp_path, accuracy_weighting=weighting))
    trainer, seen = s.trainer, set()
    weights = trainer.reward_weights.tolist()
    for row in trainer.train_dataset:
        right = _slot_of_faithful(row)
        wrong = {"A": "B", "B": "A"}[right]
        seen.add(right)
        completions = [f"<think>t</think><answer>consistency: {v}; naturalness: tie</answer>" for v in (right, wrong)]
        kw = {k: [v, v] for k, v in row.items() if k not in ("prompt", "images")}
        total = [
            sum(w * r for w, r in zip(weights, rs, strict=True))
            for rs in zip(*(f(completions, **kw) for f in trainer.reward_funcs), strict=True)
        ]
        assert total[0] > total[1], (row["example_id"], right, total)
    assert seen == {"A", "B"}  # both display orders were checked


def test_the_missing_model_hint_leads_to_a_working_setup(prefs_workspace, tmp_path, monkeypatch):
    """Run the command the hint prints, then the default settings pass every start-up check with that model."""
    import re
    import subprocess
    import sys

    with pytest.raises(ConfigError) as e:
        check_runtime(RewardConfig(model="tiny-judge"))
    cmd = re.search(r"python -c '([^']+)'", str(e.value)).group(1)
    subprocess.run([sys.executable, "-c", cmd], cwd=tmp_path, check=True, timeout=300)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"model": "tiny-judge", "data": str(prefs_workspace), "output_dir": str(tmp_path / "o")})
    assert check_runtime(cfg) == "cpu"
    from training.reward.judge import load_processor

    recipe._check_budget(cfg, load_processor(tmp_path / "tiny-judge"))  # the default 448² budget fits


def test_zero_spread_guard_warns_and_stops_the_run():
    from types import SimpleNamespace

    guard = recipe.zero_spread_guard(patience=3)
    control, state = SimpleNamespace(should_training_stop=False), SimpleNamespace(global_step=1)
    for frac in (1.0, 1.0, 0.5, 1.0, 1.0):  # a step with spread resets the streak
        with pytest.warns(RuntimeWarning, match="zero spread") if frac == 1.0 else _nothing():
            guard.on_log(None, state, control, logs={"frac_reward_zero_std": frac})
    assert not control.should_training_stop and guard.reason is None
    with pytest.warns(RuntimeWarning, match="formatsft"):
        guard.on_log(None, state, control, logs={"frac_reward_zero_std": 1.0})
    assert control.should_training_stop and "without reward spread" in guard.reason


@pytest.mark.parametrize(
    ("fmt", "acc", "said"),
    [
        (0.05, 0.0, "none is well-formed"),  # malformed answers: the format cold start
        (1.0, 0.98, "nothing left to learn"),  # every rollout right: the task is learnt (seen in training_direction)
        (0.99, 0.5, "raise temperature or num_generations"),  # one answer per prompt, right or wrong at chance
    ],
)
def test_zero_spread_guard_says_which_zero_spread_it_is(fmt, acc, said):
    from types import SimpleNamespace

    guard = recipe.zero_spread_guard(patience=1)
    control, state = SimpleNamespace(should_training_stop=False), SimpleNamespace(global_step=7)
    logs = {
        "frac_reward_zero_std": 1.0,
        "rewards/format_reward/mean": fmt,
        "rewards/accuracy_reward_votes/mean": acc,
        "reward": fmt + acc,
    }
    with pytest.warns(RuntimeWarning, match=said):
        guard.on_log(None, state, control, logs=logs)
    assert control.should_training_stop and said in guard.reason


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_mirror_pairs_share_a_step_and_warmup_reaches_the_trainer(tiny_judge, prefs_workspace, tmp_path):
    """pair_batches (the default with order: mirror): the two screen orders of each pair land in one generation
    batch, so the position term of the policy gradient (label A in one order, B in the other) cancels within each
    step; with TRL's shuffle (pair_batches: false, the old behaviour) they are scattered across steps."""

    def batches(s):
        idx = list(s.trainer._get_train_sampler(s.trainer.train_dataset))
        rows = [s.trainer.train_dataset[i]["example_id"] for i in idx[:: s.cfg.num_generations]]
        per = s.cfg.per_device_train_batch_size // s.cfg.num_generations  # prompts per step
        return [rows[i : i + per] for i in range(0, len(rows), per)]

    cfg = _cfg(tiny_judge, prefs_workspace, tmp_path / "p", warmup_ratio=0.25, lr_scheduler_type="cosine")
    s = recipe.setup(cfg)
    steps = batches(s)
    assert len(steps) >= 3 and all(len({e.split(":")[0] for e in b}) == 1 for b in steps), steps
    assert all(sorted(e.split(":")[1] for e in b) == ["ab", "ba"] for b in steps)
    args = s.trainer.args
    assert args.get_warmup_steps(100) == 25 and args.lr_scheduler_type == "cosine"
    loose = batches(recipe.setup(cfg.model_copy(update={"pair_batches": False, "output_dir": str(tmp_path / "l")})))
    assert any(len({e.split(":")[0] for e in b}) == 2 for b in loose)  # shuffled single prompts: pairs split


def test_answer_token_mask_starts_at_the_answer_tag(tiny_judge):
    """The mask keeps exactly the tokens of ``<answer>…`` (not one token early or late), a row without the tag keeps
    every token, and tokens after EOS (completion_mask 0) do not move the boundary."""
    from training.reward.judge import load_processor

    tok = load_processor(tiny_judge).tokenizer
    think, answer = "<think>1:r 2:g 3:r A:y B:n</think>", "<answer>consistency: A; naturalness: tie</answer>"
    rows = [tok.encode(think + answer), tok.encode("<think>no tag here</think> consistency: B"), tok.encode(answer)]
    width = max(map(len, rows)) + 3
    ids = torch.full((len(rows), width), tok.pad_token_id or 0, dtype=torch.long)
    keep = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], keep[i, : len(r)] = torch.tensor(r), 1
    mask = recipe.answer_token_mask(ids, keep, tok)
    n0 = len(rows[0])
    kept = ids[0, :n0][mask[0, :n0].bool()].tolist()
    dropped = ids[0, :n0][~mask[0, :n0].bool()].tolist()
    assert tok.decode(kept) == answer and tok.decode(dropped) == think
    assert mask[1].bool().all()  # malformed: every token stays in the loss
    assert mask[2].bool().all()  # the answer from the first token


def test_answer_only_policy_gradient_reads_only_answer_tokens(tiny_judge, prefs_workspace, tmp_path):
    """policy_tokens: answer, through the trainer's own rollout path (generate patched to answer a well-formed
    completion and a malformed one in turn). The batch's advantages become (B, T): the completion's own advantage
    from ``<answer>`` on, 0 before it; all of a malformed completion. TRL's loss then counts only those tokens: with
    advantages of 1 (masked the same way), β = 0 and the rollout policy, the dapo loss is −(tokens read) /
    num_items_in_batch. The KL term still reads every token (no ``tool_mask``: masking it lost the format)."""
    from training.reward.judge import load_processor

    tok = load_processor(tiny_judge).tokenizer
    good = "<think>1:r 2:g 3:r</think><answer>consistency: A; naturalness: tie</answer>"
    texts = [good, "<think>1:r</think> consistency: B"]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    counts, want = {}, {}
    for mode in ("all", "answer"):
        cfg = _cfg(tiny_judge, prefs_workspace, tmp_path / mode, max_steps=1, beta=0.0, policy_tokens=mode)
        s = recipe.setup(cfg)

        def fake_generate(input_ids, **kw):
            rows = [[*tok.encode(texts[i % 2]), eos] for i in range(input_ids.size(0))]
            width = max(map(len, rows))
            out = torch.full((len(rows), width), eos, dtype=torch.long)
            for i, r in enumerate(rows):
                out[i, : len(r)] = torch.tensor(r)
            return torch.cat([input_ids, out], dim=1)

        s.trainer.model.generate = fake_generate
        s.trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train; 1 accumulation window here
        assert s.trainer.args.steps_per_generation == 1
        batch = s.trainer._generate_and_score_completions(next(iter(s.trainer.get_train_dataloader())))
        assert "tool_mask" not in batch
        ids, keep = batch["completion_ids"], batch["completion_mask"]
        n_rows = ids.size(0)
        n_good, n_bad = (n_rows + 1) // 2, n_rows // 2
        n_answer = len(tok.encode(good[good.index("<answer>") :]))
        if mode == "answer":
            adv = batch["advantages"]
            mask = recipe.answer_token_mask(ids, keep, tok)
            assert adv.shape == ids.shape and bool((mask[0] == 0).any()) and bool(mask[1].all())
            per_row = adv.gather(1, mask.argmax(1, keepdim=True)).squeeze(1)  # each row's advantage at its answer
            assert torch.equal(adv, per_row.unsqueeze(1) * mask) and float(per_row.abs().sum()) > 0
            batch["advantages"] = recipe.answer_advantages(torch.ones(n_rows), ids, keep, tok)
            # the answer's tokens and the EOS of each good row, every token (and EOS) of each bad row
            want[mode] = n_good * (n_answer + 1) + n_bad * (len(tok.encode(texts[1])) + 1)
        else:
            assert batch["advantages"].dim() == 1
            batch["advantages"] = torch.ones(n_rows)
            want[mode] = n_good * (len(tok.encode(good)) + 1) + n_bad * (len(tok.encode(texts[1])) + 1)
        with torch.no_grad():
            loss = s.trainer._compute_loss(s.trainer.model, batch)
        counts[mode] = -float(loss) * float(batch["num_items_in_batch"])
    assert want["answer"] < want["all"]
    assert counts == pytest.approx(want, rel=1e-4)
