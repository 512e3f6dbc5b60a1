"""RefReward recipe: fine-tune a Qwen2.5-VL judge with GRPO on pairwise human preferences (TRL GRPOTrainer).

Run: ``sr4k train-reward --data <workspace|release> --model <checkpoint folder> [--config reward.yaml] [--lora]``
or ``python -m training.reward.recipe <config.yaml>``.

Steps, top to bottom:

- ``setup``: check the config against the machine, load pairs (workspace or release), split held-out LR images,
  render prompts under the pixel budget (``examples``), load model + processor, build the GRPOTrainer.
- ``train``: GRPO (TRL): per prompt G rollouts; rewards = format + agreement-weighted accuracy (or Thurstone for the
  score variant); advantages A_i = (r_i − mean_group(r)) / std (scale_rewards); clipped-ratio loss with KL β to the
  reference model. Rollouts by ``model.generate`` (CPU/GPU) or vLLM (``use_vllm``: colocate = in-process, sharing
  the GPU; server = a separate ``trl vllm-serve --model <path>`` process the trainer talks to). Checkpoints every
  ``save_steps`` (model as safetensors; optimizer/scheduler state as torch files read back with
  ``weights_only=True``); a rerun resumes from the last one. The final judge (LoRA merged by default) goes to
  ``<output_dir>/final`` as safetensors with its processor and ``refreward.json`` (prompt and pixel budget).
- ``evaluate``: held-out accuracy per criterion, position consistency, baselines (``evaluate.py``).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.reward.config import ConfigError, RewardConfig, check_runtime, load_config
from training.reward.data import PreferenceSample, filter_samples, load_preferences, split_by_lr
from training.reward.examples import PROMPT_VERSION, make_examples
from training.reward.judge import JUDGE_META, load_model, load_processor
from training.reward.rewards import reward_functions


@dataclass
class Setup:
    cfg: RewardConfig
    trainer: Any
    processor: Any
    train_samples: list[PreferenceSample]
    held_samples: list[PreferenceSample]
    device: str
    n_examples: int


def _rows(samples: list[PreferenceSample], cfg_json: str):
    """datasets generator: one row per prompt (a pair in one or both orders). With ``pair_batches`` the pairs are
    shuffled here, once, by ``seed`` and the trainer keeps this order (``shuffle_dataset`` off): the two mirrored
    prompts of a pair are neighbours, so they fall in one generation batch whenever it holds an even number of
    prompts (``per_device_train_batch_size · gradient_accumulation_steps / num_generations``)."""
    cfg = RewardConfig.model_validate_json(cfg_json)
    if _paired(cfg):
        samples = list(samples)
        random.Random(cfg.seed).shuffle(samples)
    for s in samples:
        for ex in make_examples(s, cfg.pixel_budget, order=cfg.order, seed=cfg.seed, answer=cfg.answer):
            yield ex.row()


def _paired(cfg: RewardConfig) -> bool:
    return cfg.order == "mirror" and cfg.pair_batches


def build_dataset(samples: list[PreferenceSample], cfg: RewardConfig, cache_dir: Path):
    """A datasets.Dataset of prompt rows, written to an Arrow cache on disk (4K pairs never sit in memory)."""
    from datasets import Dataset

    return Dataset.from_generator(
        _rows, gen_kwargs={"samples": samples, "cfg_json": cfg.model_dump_json()}, cache_dir=str(cache_dir)
    )


def _check_budget(cfg: RewardConfig, processor: Any) -> None:
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    max_pixels = size.get("longest_edge") or getattr(ip, "max_pixels", None)
    need = cfg.pixel_budget.max_image_pixels()
    if max_pixels and need > max_pixels:
        raise ConfigError(
            f"pixel_budget sends images of up to {need} px but the processor of {cfg.model} resizes anything above "
            f"max_pixels={max_pixels}: lower pixel_budget.global_max_pixels / crop_size to ≤ {max_pixels} px "
            "(crop_size² for crops), or raise max_pixels in the checkpoint's preprocessor config"
        )


def _grpo_args(cfg: RewardConfig, device: str):
    from trl import GRPOConfig

    bf16 = cfg.bf16 if cfg.bf16 is not None else device == "cuda"
    return GRPOConfig(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a share of the steps
        shuffle_dataset=not _paired(cfg),
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        reward_weights=cfg.reward_weights(),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_train_epochs,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        use_cpu=device == "cpu",
        bf16=bf16,
        seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_server_host=cfg.vllm_server_host,
        vllm_server_port=cfg.vllm_server_port,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
        # Qwen2.5-VL's 128K context would make colocated vLLM reserve a KV cache for it: size it to the prompts
        vllm_max_model_length=cfg.vllm_max_model_length or cfg.prompt_tokens_estimate() + cfg.max_completion_length,
    )


ZERO_SPREAD_PATIENCE = 3  # consecutive logged steps in which every group's reward had zero spread


def zero_spread_guard(patience: int = ZERO_SPREAD_PATIENCE):
    """A TrainerCallback that warns on every logged step where every group's reward has zero spread (TRL's
    ``frac_reward_zero_std`` = 1: all advantages 0, no gradient, the step only moves the model through KL/noise) and
    stops the run after ``patience`` such steps in a row, recording why in ``reason``."""
    import warnings

    from transformers import TrainerCallback

    def why(logs: dict) -> str:
        """What zero spread means here, from the logged reward means: answers malformed, the training prompts
        learnt (every rollout right: stopping is the point), or one answer per prompt (sampling too narrow)."""
        means = {k.split("/")[1]: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")}
        fmt = next((v for k, v in means.items() if "format" in k), float("nan"))
        acc = next((v for k, v in means.items() if "format" not in k), float("nan"))
        said = f"mean format reward {fmt:.3f}, mean preference reward {acc:.3f}"
        if not fmt >= 0.9:
            return (
                f"{said}): all answers scored alike - most often none is well-formed; start from a format "
                "cold-start (training.reward.formatsft) or raise temperature / max_completion_length"
            )
        if acc >= 0.95:
            return (
                f"{said}): every rollout earns the full reward - the judge answers its training prompts right and "
                "there is nothing left to learn from them; evaluate it on held-out pairs (sr4k eval-reward) or add "
                "harder pairs"
            )
        return (
            f"{said}): well-formed answers, but each prompt's samples all say the same - raise temperature or "
            "num_generations"
        )

    class ZeroSpreadGuard(TrainerCallback):
        reason: str | None = None
        streak = 0

        def on_log(self, args, state, control, logs=None, **kw):
            frac = (logs or {}).get("frac_reward_zero_std")
            if frac is None:
                return
            self.streak = self.streak + 1 if frac >= 1.0 else 0
            if frac >= 1.0:
                msg = f"step {state.global_step}: every group's reward has zero spread (no gradient; {why(logs)})"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                if self.streak >= patience:
                    self.reason = f"stopped after {self.streak} steps without reward spread: {msg}"
                    control.should_training_stop = True

    return ZeroSpreadGuard()


ANSWER_MARK = "<answer>"


def answer_token_mask(completion_ids: Any, completion_mask: Any, tokenizer: Any, mark: str = ANSWER_MARK) -> Any:
    """1 for the completion tokens from the one holding the first character of ``mark`` on, 0 before it; a row
    without ``mark`` is all 1 (a malformed completion keeps every token, so the format reward still reaches it).

    Token boundaries come from the decoded prefix lengths, found by bisection (about log2(length) decodes a row);
    decoded prefixes grow with the prefix, which bisection needs. ``completion_mask`` (TRL's, 0 after EOS) only
    limits the text searched; TRL's loss applies it on top.
    """
    import torch

    out = torch.ones_like(completion_mask)
    for row, (ids, keep) in enumerate(zip(completion_ids.tolist(), completion_mask.tolist(), strict=True)):
        ids = ids[: int(sum(keep))]
        at = tokenizer.decode(ids, skip_special_tokens=False).find(mark)
        if at < 0:
            continue
        lo, hi = 0, len(ids) - 1  # first token j whose prefix ids[: j + 1] decodes past character `at`
        while lo < hi:
            mid = (lo + hi) // 2
            if len(tokenizer.decode(ids[: mid + 1], skip_special_tokens=False)) > at:
                hi = mid
            else:
                lo = mid + 1
        out[row, :lo] = 0
    return out


def answer_advantages(advantages: Any, completion_ids: Any, completion_mask: Any, tokenizer: Any) -> Any:
    """Per-token advantages (B, T): each completion's advantage on its answer tokens (:func:`answer_token_mask`),
    0 on its reasoning. TRL's loss takes (B, T) advantages as they are (it unsqueezes only a (B,) tensor)."""
    mask = answer_token_mask(completion_ids, completion_mask, tokenizer)
    return advantages.reshape(-1, 1) * mask.to(advantages.dtype)


def answer_only_trainer(base: type) -> type:
    """``policy_tokens: answer``: a GRPOTrainer whose policy-gradient term reads only the answer tokens, while the
    KL term to the reference still reads every token (it holds the reasoning and the format where they were).

    The hypothesis it tests (``benchmarks/training_direction.py``): after a cold start that writes a pixel-determined
    reasoning, GRPO's signal is in the few verdict tokens, while the sampled variations of the reasoning get the
    same advantage as the verdict they follow, noise spread over ~5x more tokens in the shared weights. Measured on
    6 seeds it changed nothing (the same 3 seeds learn as with every token, to the same accuracy). Taking the
    reasoning out of the KL term too (TRL's ``tool_mask``) lost the format in one seed of three, so only the
    advantages are masked (:func:`answer_advantages`). Not in VisualQuality-R1 or TRL's recipes, which train every
    token: an option, default off.
    """

    class AnswerOnlyGRPOTrainer(base):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            tok = getattr(self.processing_class, "tokenizer", self.processing_class)
            out["advantages"] = answer_advantages(
                out["advantages"], out["completion_ids"], out["completion_mask"], tok
            )
            return out

    return AnswerOnlyGRPOTrainer


def setup(cfg: RewardConfig, callbacks: list[Any] | None = None) -> Setup:
    """Everything up to a ready GRPOTrainer; configuration errors raise ConfigError before any heavy work."""
    device = check_runtime(cfg)
    if cfg.data is None:
        raise ConfigError("no preferences given: set data (CLI: --data <workspace or release folder>)")
    samples = filter_samples(load_preferences(cfg.data), cfg.min_agreement)
    if not samples:
        raise ConfigError(f"no pair of {cfg.data} reaches min_agreement={cfg.min_agreement}: lower min_agreement")
    train_s, held_s = split_by_lr(samples, cfg.holdout, cfg.seed)
    if not train_s:
        raise ConfigError(f"holdout={cfg.holdout} leaves no training pair out of {len(samples)}: lower holdout")
    processor = load_processor(cfg.model)
    _check_budget(cfg, processor)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = build_dataset(train_s, cfg, out / "dataset-cache")

    import torch
    from trl import GRPOTrainer

    bf16 = cfg.bf16 if cfg.bf16 is not None else device == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32  # bf16 weights on GPU, as TRL's own recipes load them
    model = load_model(cfg.model, "cpu", dtype, cfg.attn_implementation).train()  # the trainer places it
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    elif cfg.freeze_vision:
        visual = getattr(getattr(model, "model", model), "visual", None) or getattr(model, "visual", None)
        if visual is not None:
            visual.requires_grad_(False)
    trainer_cls = answer_only_trainer(GRPOTrainer) if cfg.policy_tokens == "answer" else GRPOTrainer
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward_functions(cfg.answer, cfg.accuracy_weighting),
        args=_grpo_args(cfg, device),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[*(callbacks or []), zero_spread_guard()],
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # logs go to state.log_history and the caller's callbacks, not stdout
    return Setup(cfg, trainer, processor, train_s, held_s, device, len(dataset))


def last_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    d = Path(output_dir)
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def save_final(s: Setup) -> Path:
    """The judge as one loadable folder: safetensors weights (LoRA merged unless merge_lora: false), processor and
    ``refreward.json``; with merge_lora: false the folder holds the adapter and names its base model."""
    final = Path(s.cfg.output_dir) / "final"
    model = s.trainer.model
    if s.cfg.lora and s.cfg.merge_lora:
        model = model.merge_and_unload()
    model.save_pretrained(final, safe_serialization=True)
    s.processor.save_pretrained(final)
    meta = {
        "prompt_version": PROMPT_VERSION,
        "answer": s.cfg.answer,
        "pixel_budget": s.cfg.pixel_budget.model_dump(),
        "max_new_tokens": s.cfg.max_completion_length,
        "base_model": str(Path(s.cfg.model).expanduser().resolve()),
        "lora_merged": bool(s.cfg.lora and s.cfg.merge_lora),
        "global_step": int(s.trainer.state.global_step),
        "config": json.loads(s.cfg.model_dump_json()),
    }
    (final / JUDGE_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return final


def _finished(cfg: RewardConfig) -> dict[str, Any] | None:
    """The final judge's metadata when a resumable run already reached max_steps (nothing left to train)."""
    meta = Path(cfg.output_dir) / "final" / JUDGE_META
    if not (cfg.resume and cfg.max_steps > 0 and meta.exists()):
        return None
    m = json.loads(meta.read_text())
    return m if m.get("global_step", 0) >= cfg.max_steps and last_checkpoint(cfg.output_dir) else None


def train(cfg: RewardConfig, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """setup → GRPO (resuming from the last checkpoint) → save the final judge. Returns a summary dict."""
    t0 = time.perf_counter()
    s = setup(cfg, callbacks)
    resume_from = last_checkpoint(cfg.output_dir) if cfg.resume else None
    start_step = int(resume_from.rsplit("-", 1)[-1]) if resume_from else 0
    t1 = time.perf_counter()
    done = _finished(cfg)
    t2 = t1
    if done is not None:  # a rerun of a completed run: keep the final judge, train nothing
        final, global_step, train_loss, history = Path(cfg.output_dir) / "final", done["global_step"], math.nan, []
    else:
        result = s.trainer.train(resume_from_checkpoint=resume_from)
        t2 = time.perf_counter()  # GRPO steps only (rollouts + updates + checkpoints), not the final save
        final, global_step = save_final(s), int(s.trainer.state.global_step)
        train_loss = float(result.training_loss) if result.training_loss is not None else math.nan
        history = s.trainer.state.log_history
    guard = next((c for c in s.trainer.callback_handler.callbacks if type(c).__name__ == "ZeroSpreadGuard"), None)
    losses = [h["loss"] for h in history if "loss" in h]
    rewards = [h["reward"] for h in history if "reward" in h]
    steps_run = global_step - start_step if done is None else 0
    return {
        "final": str(final),
        "device": s.device,
        "resumed_from": resume_from,
        "global_step": global_step,
        "steps_run": steps_run,
        "train_pairs": len(s.train_samples),
        "held_out_pairs": len(s.held_samples),
        "prompts": s.n_examples,
        "train_loss": train_loss,
        "last_loss": losses[-1] if losses else math.nan,
        "mean_reward": sum(rewards) / len(rewards) if rewards else math.nan,
        "setup_s": t1 - t0,
        "train_s": t2 - t1,
        "steps_per_s": steps_run / (t2 - t1) if t2 > t1 else math.nan,
        "log_history": history,
        "held_out": [smp.rec.pair_id for smp in s.held_samples],
        "stopped": getattr(guard, "reason", None) if done is None else None,
    }


def eval_inputs(
    checkpoint: str | Path,
    data: str | Path,
    pair_ids: list[str] | None = None,
    *,
    backend: str = "transformers",
    device: str | None = None,
    limit: int | None = None,
) -> tuple[Any, list[PreferenceSample]]:
    """What an evaluation judges with and on: the judge of ``checkpoint`` on ``backend`` and the preferences of
    ``data`` (only ``pair_ids`` when given; the first ``limit``). Errors name the checkpoint or the data."""
    from training.reward.judge import load_judge

    samples = load_preferences(data)
    if pair_ids is not None:
        keep = set(pair_ids)
        samples = [s for s in samples if s.rec.pair_id in keep]
    samples = samples[:limit] if limit else samples
    return load_judge(checkpoint, backend=backend, device=device), samples


def evaluate_judge(
    checkpoint: str | Path,
    data: str | Path,
    pair_ids: list[str] | None = None,
    *,
    backend: str = "transformers",
    device: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    baselines: bool = True,
) -> dict[str, Any]:
    """The one evaluation path of a judge — :func:`eval_inputs`, then ``training.reward.evaluate.evaluate_pairs``
    (the report dict) — used by ``sr4k train-reward`` (held-out pairs, :func:`evaluate`), ``sr4k eval-reward`` (which
    drives a progress bar between the two) and the reward flows (``flows.reward``)."""
    from training.reward.evaluate import evaluate_pairs

    judge, samples = eval_inputs(checkpoint, data, pair_ids, backend=backend, device=device, limit=limit)
    return evaluate_pairs(judge, samples, baselines=baselines, batch_size=batch_size)


def evaluate(summary: dict[str, Any], cfg: RewardConfig, device: str | None = None) -> dict[str, Any] | None:
    """Held-out evaluation of the final judge of a :func:`train` run (None when nothing was held out)."""
    if not summary["held_out"]:
        return None
    return evaluate_judge(summary["final"], cfg.data, summary["held_out"], device=device or summary["device"])


if __name__ == "__main__":
    c = load_config(sys.argv[1] if len(sys.argv) > 1 else None)
    summ = train(c)
    print(json.dumps({k: v for k, v in summ.items() if k != "log_history"}, indent=2))
