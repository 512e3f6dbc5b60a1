"""RefReward: an LR-conditioned MLLM judge (Qwen2.5-VL) trained with GRPO on pairwise human preferences, and the
scorer that turns its pairwise verdicts into per-candidate rewards. See training/reward/README.md."""
