"""Session fixtures of the RefReward tests: one tiny random Qwen2.5-VL judge, one tiny preferences workspace."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny matmuls on a shared 2-core machine run ~50x faster on one thread (no OpenMP contention)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory) -> Path:
    from training.reward.tiny import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("refreward-tiny"), seed=0)


@pytest.fixture(scope="session")
def prefs_workspace(tmp_path_factory) -> Path:
    from refreward_fixtures import write_workspace

    return write_workspace(tmp_path_factory.mktemp("refreward-ws"), n=4)
