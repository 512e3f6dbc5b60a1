"""Session fixtures of the OP4KSR tests: one tiny backbone and one set of curated-style shards."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    from training.sr.tiny import build_tiny_op4ksr

    return build_tiny_op4ksr(tmp_path_factory.mktemp("op4ksr-tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    from op4ksr_fixtures import write_pairs_shards

    return write_pairs_shards(tmp_path_factory.mktemp("op4ksr-shards") / "train4k", n=4, hr=128, scale=4)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP spin-waiting made these
    tests ~3x slower (measured); restored after each test so other packages' tests are unaffected."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
