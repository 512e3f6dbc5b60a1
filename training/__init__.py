"""Training recipes: reward/ (RefReward MLLM judge) and sr/ (OP4KSR). Not built yet."""
