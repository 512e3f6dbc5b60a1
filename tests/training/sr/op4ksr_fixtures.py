"""Shared fixtures of the OP4KSR tests: a tiny backbone (built once per session) and curated-style shards.

The shards are written with ``pipelines.store.shards.ShardWriter`` (the writer ``sr4k curate`` uses), one sample =
``<key>.hr.png`` + ``<key>.lr.png`` + ``<key>.json``, LR = area-downscaled HR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from imagefixtures import natural_image

from pipelines.store.shards import ShardWriter
from pipelines.store.workspace import encode_png


def write_pairs_shards(out: Path, n: int = 4, hr: int = 128, scale: int = 4, seed: int = 0) -> Path:
    """``n`` (HR, LR) samples of natural-looking images in ``out`` (2 shards); returns the shard folder."""
    writer = ShardWriter(out, split="train", max_count=max(1, n // 2))
    for i in range(n):
        img = natural_image(hr, hr, seed + i)
        lr = cv2.resize(img, (hr // scale, hr // scale), interpolation=cv2.INTER_AREA)
        meta = json.dumps({"key": f"s{i:03d}", "scale": scale}).encode()
        writer.write(f"s{i:03d}", {"hr.png": encode_png(img, 1), "lr.png": encode_png(lr, 1), "json": meta})
    writer.finish("tiny")
    return out


def natural(h: int, w: int, seed: int = 0) -> np.ndarray:
    return natural_image(h, w, seed)


def saved_checkpoint(backbone: tuple[Path, Path], out: Path) -> Path:
    """An OP4KSR checkpoint at ``out`` whose LoRA is non-zero (a fresh LoRA is the identity: outputs would not tell
    whether the checkpoint's weights were loaded)."""
    import torch

    from training.sr.config import ModelConfig
    from training.sr.model import OP4KSR

    t, v = backbone
    m = OP4KSR.from_config(ModelConfig(transformer=str(t), vae=str(v)), device="cpu")
    with torch.no_grad():
        for p in m.lora_parameters():
            p.add_(0.01)
    m.save(out)
    return out
