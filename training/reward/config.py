"""The typed config of the RefReward GRPO recipe (``recipe.py``): YAML file + CLI overrides → ``RewardConfig``.

Rules checked at start (each failure names the fix): a GRPO group needs ≥ 2 rollouts; the generation batch
(per-device batch × gradient accumulation) must hold whole groups; vLLM and bf16 need a GPU; the answer format
needs room (max_completion_length); the pixel budget must fit the processor (checked in ``recipe.setup`` once the
processor is loaded); ``use_vllm`` needs the ``vllm`` package (``check_runtime``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from pipelines.store.settings import SettingsError, load_settings
from training.reward.examples import PixelBudget

# Only the language model's projections: the vision tower's MLP has the same names (gate/up/down_proj).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VLLM_FIX = (
    "install vLLM in a CUDA environment (`pip install 'sr4k[vllm]'`, see training/reward/README.md 'vLLM'), "
    "or set use_vllm: false (CLI: drop --use-vllm) to generate with transformers"
)


class ConfigError(ValueError):
    """An invalid setting or combination; the message names the rule and the fix."""


class RewardConfig(BaseModel):
    """Settings of one judge training run (``sr4k train-reward``)."""

    model_config = {"extra": "forbid"}

    model: str = Field(..., description="Local folder of a Qwen2-VL/Qwen2.5-VL checkpoint (config.json + weights)")
    data: str | None = Field(None, description="Preferences: a workspace folder or a release folder / .tar")
    output_dir: str = Field("./sr4k-data/models/refreward", description="Checkpoints, final model and report go here")
    answer: Literal["verdict", "score"] = Field("verdict", description="Answer format: A|B|tie, or 0-10 scores")
    accuracy_weighting: Literal["votes", "label"] = Field("votes", description="Accuracy: vote share or agreement·hit")
    format_weight: float = Field(0.25, ge=0, description="Weight of the format reward")
    accuracy_weight: float = Field(1.0, ge=0, description="Weight of the accuracy (or Thurstone) reward")
    order: Literal["random", "mirror"] = Field("mirror", description="A/B order: one random order, or both (mirrored)")
    pair_batches: bool = Field(
        True,
        description="mirror: both orders of a pair in one step (pairs shuffled once by seed), so the position "
        "term of the gradient cancels within each step; false: TRL's per-epoch shuffle of single prompts",
    )
    holdout: float = Field(0.1, ge=0, lt=1, description="Share of LR images held out for the final evaluation")
    min_agreement: float = Field(0.0, ge=0, le=1, description="Drop pairs below this agreement on all criteria")
    seed: int = Field(0, description="Seed of order, split, sampling and initialisation")
    pixel_budget: PixelBudget = Field(default_factory=PixelBudget, description="What the judge sees of a 4K pair")

    num_generations: int = Field(4, description="GRPO group size: rollouts per prompt")
    per_device_train_batch_size: int = Field(4, ge=1, description="Completions per device per step")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimiser step")
    max_steps: int = Field(-1, description="Optimiser steps; -1 = num_train_epochs over the data")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs when max_steps = -1")
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (1e-6 full, ~1e-5 with LoRA)")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after the warm-up (transformers' names)"
    )
    warmup_ratio: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of the steps over which the lr ramps up from 0 (Adam's first steps move "
        "every weight by ~lr whatever the gradient; a warm-up keeps them small)",
    )
    beta: float = Field(0.04, ge=0, description="KL coefficient to the reference model (0 = no reference model)")
    epsilon: float = Field(0.2, gt=0, description="PPO clip range")
    policy_tokens: Literal["all", "answer"] = Field(
        "all",
        description="Completion tokens the policy-gradient term reads: all of them (TRL, VisualQuality-R1), or only "
        "those from '<answer>' on (a completion without '<answer>' keeps all, so the format is still taught); the "
        "KL term reads every token either way",
    )
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field("dapo", description="TRL GRPO loss normalisation")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "batch", description="Advantage scaling; 'group' divides by the per-prompt std and undoes agreement weights"
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts")
    max_completion_length: int = Field(256, description="Max new tokens per rollout (reasoning + answer)")

    lora: bool = Field(False, description="Train LoRA adapters on the language model instead of all weights")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    lora_target_modules: str | list[str] = Field(LORA_TARGETS, description="peft target_modules (regex or names)")
    merge_lora: bool = Field(True, description="Save the final model with the adapters merged (vLLM serves it)")
    freeze_vision: bool = Field(True, description="Keep the vision tower frozen during full fine-tuning")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory")
    attn_implementation: str | None = Field(None, description="sdpa | flash_attention_2 | eager; None = default")

    use_vllm: bool = Field(False, description="Generate rollouts with vLLM (GPU only)")
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="colocate | server")
    vllm_server_host: str = Field("127.0.0.1", description="Server mode: host of `trl vllm-serve`")
    vllm_server_port: int = Field(8000, description="Server mode: port of `trl vllm-serve`")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="Colocate: GPU share vLLM may take")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="Colocate: tensor-parallel size of vLLM")
    vllm_max_model_length: int | None = Field(
        None, description="Colocate: vLLM context (KV cache) length; None = prompt estimate + max_completion_length"
    )

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    bf16: bool | None = Field(None, description="bf16 training; None = on for CUDA, off for CPU")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept")
    logging_steps: int = Field(1, ge=1, description="Log every N steps")
    resume: bool = Field(True, description="Resume from the last checkpoint in output_dir when there is one")

    @model_validator(mode="after")
    def _rules(self) -> RewardConfig:
        g = self.num_generations
        if g < 2:
            raise ValueError(
                f"num_generations={g}: GRPO advantages are relative to the group, a group of one learns nothing; "
                "set num_generations ≥ 2"
            )
        gen_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if gen_batch % g:
            fix = ((self.per_device_train_batch_size + g - 1) // g) * g
            raise ValueError(
                f"per_device_train_batch_size × gradient_accumulation_steps = {gen_batch} must be a multiple of "
                f"num_generations={g} (a generation batch holds whole groups): set per_device_train_batch_size to "
                f"{fix} or change num_generations"
            )
        if self.use_vllm and self.device == "cpu":
            raise ValueError("use_vllm needs a CUDA GPU: set use_vllm: false for CPU training (or device: cuda)")
        if self.bf16 and self.device == "cpu":
            raise ValueError("bf16 on device: cpu is not supported by the trainer here: set bf16: false")
        if self.max_completion_length < 24:
            raise ValueError(
                f"max_completion_length={self.max_completion_length} cannot hold the answer "
                "(<think></think><answer>consistency: A; naturalness: B</answer> alone is ~20 tokens): set it ≥ 24"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps={self.max_steps}: use a positive number, or -1 to train num_train_epochs")
        if self.lora and self.freeze_vision is False:
            raise ValueError("lora trains adapters on the language model only: leave freeze_vision: true with lora")
        return self

    def prompt_tokens_estimate(self) -> int:
        """Upper estimate of one prompt's tokens: vision tokens of the pixel budget (one per 28² px) + ~1K of text."""
        b = self.pixel_budget
        return 3 * (b.global_max_pixels + b.n_crops * b.crop_size**2) // 784 + 1024

    def reward_weights(self) -> list[float]:
        """Weights of ``rewards.reward_functions(self.answer)``, same order (format, accuracy/Thurstone)."""
        return [self.format_weight, self.accuracy_weight]


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RewardConfig:
    """YAML file (optional) + overrides (dotted keys, e.g. ``pixel_budget.crop_size``; None values ignored), loaded
    as every sr4k config is (``pipelines.store.settings``); a ConfigError of one line naming key, source and fix."""
    try:
        return load_settings(RewardConfig, path, overrides, what="reward")
    except SettingsError as e:
        raise ConfigError(str(e)) from None


def check_runtime(cfg: RewardConfig) -> str:
    """Checks that need the machine (model folder, CUDA, vLLM); returns the device to use ("cpu" | "cuda")."""
    import torch

    model = Path(cfg.model).expanduser()
    if not (model / "config.json").is_file():
        raise ConfigError(
            f"model {model} is not a local checkpoint folder (no config.json): give the folder of a Qwen2.5-VL "
            "checkpoint (e.g. a downloaded Qwen2.5-VL-3B-Instruct), or build a tiny random one for a smoke test: "
            "python -c 'from training.reward.tiny import build_tiny_qwen_vl; build_tiny_qwen_vl(\"tiny-judge\")'"
        )
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise ConfigError("device: cuda but no CUDA device is visible: set device: cpu (or auto)")
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda) else "cpu"
    if cfg.use_vllm:
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"use_vllm is set but the vllm package is not installed: {VLLM_FIX}")
        if device != "cuda":
            raise ConfigError("use_vllm needs a CUDA GPU and none is visible: set use_vllm: false on this machine")
    if cfg.bf16 and device != "cuda":
        raise ConfigError("bf16: true needs a CUDA device here: set bf16: false (or leave it unset)")
    return device
