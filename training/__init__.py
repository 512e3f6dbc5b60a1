"""Training recipes: reward/ (RefReward, the LR-conditioned MLLM judge, GRPO) and sr/ (OP4KSR, one-step 4K SR)."""
