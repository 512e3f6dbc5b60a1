"""Streaming (HR, LR) training pairs from the curated webdataset shards (pipelines.curate.build, store.shards).

A sample is ``<key>.hr.png``, ``<key>.lr.png``, ``<key>.json`` with LR = HR / scale exactly. The stream is
deterministic in (seed, rank, world): per epoch the shard order is a seeded permutation, each process reads every
``world``-th shard, samples pass a seeded shuffle buffer, and each yields one aligned random crop (HR crop of
``crop`` px at a position that is a multiple of the scale, the matching LR crop). Resuming skips the samples already
consumed (``skip``), reading but not decoding them, so a resumed run sees the same data it would have seen.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch


def shard_urls(specs: list[str]) -> list[str]:
    """Shard tar paths from a mix of tar paths and shard folders (read in their ``manifest.json`` order)."""
    urls: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            manifest = p / "manifest.json"
            if manifest.is_file():
                urls += [str(p / s["name"]) for s in json.loads(manifest.read_text())["shards"]]
            else:
                urls += sorted(str(x) for x in p.glob("*.tar"))
        elif p.is_file():
            urls.append(str(p))
        else:
            raise FileNotFoundError(f"--shards {spec}: no such shard tar or shard folder")
    if not urls:
        raise FileNotFoundError(f"no shard tars in {specs} (run `sr4k curate` first)")
    return urls


def decode_png(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("undecodable PNG in a curated shard")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _all_urls(urls):
    return urls  # shards are split across processes above, not by webdataset


def _raw_samples(urls: list[str], seed: int, rank: int, world: int, buffer: int) -> Iterator[dict]:
    import webdataset as wds

    epoch = 0
    while True:
        order = list(urls)
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        mine = order[rank::world] or order  # fewer shards than processes: every process reads them all
        rng = random.Random(seed * 7919 + epoch * 31 + rank)
        pool: list[dict] = []
        for sample in wds.WebDataset(mine, shardshuffle=False, empty_check=False, nodesplitter=_all_urls):
            if "hr.png" not in sample or "lr.png" not in sample:
                raise ValueError(f"sample {sample.get('__key__')} lacks hr.png/lr.png (not a curated shard)")
            pool.append(sample)
            if len(pool) >= buffer:
                yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool
        epoch += 1


def pairs(
    urls: list[str],
    crop: int,
    scale: int,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    buffer: int = 64,
    skip: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (HR crop, LR crop) uint8 pairs; HR is ``crop``² px, LR ``crop/scale``²."""
    rng = np.random.default_rng([seed, rank])
    for i, sample in enumerate(_raw_samples(urls, seed, rank, world, buffer)):
        y0x0 = rng.random(2)  # drawn for skipped samples too, so a resumed stream crops identically
        if i < skip:
            continue
        hr, lr = decode_png(sample["hr.png"]), decode_png(sample["lr.png"])
        if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
            raise ValueError(
                f"sample {sample['__key__']}: HR {hr.shape[:2]} is not {scale}x LR {lr.shape[:2]}; set model.scale "
                "to the curated scale"
            )
        if min(hr.shape[:2]) < crop:
            raise ValueError(f"sample {sample['__key__']}: HR {hr.shape[:2]} smaller than data.crop {crop}")
        lc = crop // scale
        ly = int(y0x0[0] * (lr.shape[0] - lc + 1))
        lx = int(y0x0[1] * (lr.shape[1] - lc + 1))
        yield (
            np.ascontiguousarray(hr[ly * scale : ly * scale + crop, lx * scale : lx * scale + crop]),
            np.ascontiguousarray(lr[ly : ly + lc, lx : lx + lc]),
        )


def batches(stream: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """(HR, LR) float tensors (B, 3, H, W) in [−1, 1]."""
    while True:
        hrs, lrs = zip(*(next(stream) for _ in range(batch_size)), strict=True)
        yield to_tensor(np.stack(hrs)), to_tensor(np.stack(lrs))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1
