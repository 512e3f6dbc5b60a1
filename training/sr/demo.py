"""The OP4KSR step of ``sr4k demo``: tiny random backbone, 2 supervised steps on the demo's curated shards, one
upscale. Call :func:`run` after the curate step has written ``<workspace>/shards/<dataset>``."""

from __future__ import annotations

import time
from pathlib import Path

import cv2


def run(workspace: str | Path, dataset: str = "train4k", steps: int = 2, crop: int = 128) -> dict:
    """Build ``<ws>/models/op4ksr-tiny/{transformer,vae}``, train ``steps`` LoRA steps into
    ``<ws>/models/op4ksr-demo``, upscale the first LR of the shards to ``<ws>/op4ksr-demo.png``; returns a summary."""
    from training.sr import data, supervised
    from training.sr.config import TrainConfig
    from training.sr.model import OP4KSR
    from training.sr.tiny import build_tiny_op4ksr

    ws = Path(workspace)
    shards = ws / "shards" / dataset
    if not (shards / "manifest.json").is_file():
        raise FileNotFoundError(f"no curated shards at {shards}: run `sr4k curate` (or the demo's curate step) first")
    tdir, vdir = build_tiny_op4ksr(ws / "models" / "op4ksr-tiny")
    out = ws / "models" / "op4ksr-demo"
    cfg = TrainConfig.model_validate(
        {"model": {"transformer": str(tdir), "vae": str(vdir), "rfr": {"target_grid": crop // 32 * 2,
                                                                       "pretrain_grid": crop // 32}},
         "data": {"shards": [str(shards)], "crop": crop, "batch_size": 1}, "steps": steps, "out": str(out),
         "save_every": steps, "log_every": 1, "resume": False}
    )  # fmt: skip
    t0 = time.perf_counter()
    trained = supervised.train(supervised.setup(cfg))
    train_s = time.perf_counter() - t0
    model = OP4KSR.from_checkpoint(out / "model")
    import webdataset as wds

    first = next(iter(wds.WebDataset(data.shard_urls([str(shards)]), shardshuffle=False, empty_check=False)))
    lr = data.decode_png(first["lr.png"])
    t0 = time.perf_counter()
    sr = model.upscale(lr)
    up_s = time.perf_counter() - t0
    path = ws / "op4ksr-demo.png"
    cv2.imwrite(str(path), cv2.cvtColor(sr, cv2.COLOR_RGB2BGR))
    last = trained.history[-1]
    return {"model": str(out / "model"), "steps": trained.step, "loss": last["total"], "train_seconds": train_s,
            "lr_size": f"{lr.shape[1]}x{lr.shape[0]}", "sr_size": f"{sr.shape[1]}x{sr.shape[0]}",
            "upscale_seconds": up_s, "output": str(path), "rope_theta": model.theta}  # fmt: skip
