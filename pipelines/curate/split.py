"""The train / benchmark split: which images are held out of training so that benchmarks never overlap it.

An image is held out when ``sha256("split:" + key) mod 1000 < permille``, where ``key`` is its pixel-hash key: a
property of the picture itself, so the decision is the same in every workspace, for every rerun and whatever the
file is called. Curation (curate.build.holdout) removes held-out images, and images already used by a benchmark
in the workspace, from the training shards; the synthetic benchmark builder (pipelines.bench.sets) takes its images
from exactly those held-out ones, so a key never appears in both.
"""

from __future__ import annotations

import hashlib


def holdout_split(key: str, permille: int = 10) -> bool:
    """True if the image ``key`` is held out for benchmarks (``permille`` per thousand of all keys)."""
    if not 0 <= permille <= 1000:
        raise ValueError(f"holdout permille must be in 0..1000, got {permille}")
    return int.from_bytes(hashlib.sha256(f"split:{key}".encode()).digest()[:8], "big") % 1000 < permille
