"""The OP4KSR step of ``sr4k demo``: tiny random backbone, 2 supervised steps on the demo's curated shards, one
upscale. Call :func:`run` after the curate step has written ``<workspace>/shards/<dataset>``; ``sr4k demo`` runs the
same steps with the training as the ``train-sr`` flow (:func:`prepare`, ``flows.train``, :func:`upscale_first`)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from pipelines.store.workspace import Workspace


def prepare(workspace: str | Path, dataset: str = "train4k", steps: int = 2, crop: int = 128) -> dict:
    """Build ``<ws>/models/op4ksr-tiny/{transformer,vae}``; return the training config (``TrainConfig`` fields) of
    ``steps`` LoRA steps on ``<ws>/shards/<dataset>`` into ``<ws>/models/op4ksr-demo`` (RFR grids for ``crop``)."""
    from training.sr.config import AP_MIN_CROP, TrainConfig
    from training.sr.tiny import build_tiny_op4ksr

    ws = Workspace(workspace)
    shards = ws.shard_dir(dataset)
    if not (shards / "manifest.json").is_file():
        raise FileNotFoundError(f"no curated shards at {shards}: run `sr4k curate` (or the demo's curate step) first")
    tdir, vdir = build_tiny_op4ksr(ws.models / "op4ksr-tiny")
    rfr = {"target_grid": crop // 32 * 2, "pretrain_grid": crop // 32}
    cfg = {
        "model": {"transformer": str(tdir), "vae": str(vdir), "rfr": rfr},
        "data": {"shards": [str(shards)], "crop": crop, "batch_size": 1},
        # The demo's crops are tiny (128 px): below AP_MIN_CROP, L_AP's floor on natural content exceeds its margin
        # (training/sr/config.py), so the demo trains without it, as the config's own warning advises.
        "loss": {"ap": 0.0} if crop < AP_MIN_CROP else {},
        "steps": steps,
        "out": str(ws.models / "op4ksr-demo"),
        "save_every": steps,
        "log_every": 1,
        "resume": False,
    }
    return TrainConfig.model_validate(cfg).model_dump(mode="json")


def upscale_first(workspace: str | Path, model_dir: str | Path, dataset: str = "train4k") -> dict:
    """Upscale the first LR of ``<ws>/shards/<dataset>`` with the checkpoint ``model_dir`` to ``<ws>/op4ksr-demo.png``;
    returns sizes, seconds, the output path and the checkpoint's RoPE theta."""
    import webdataset as wds

    from training.sr import data
    from training.sr.model import OP4KSR

    ws = Path(workspace)
    model = OP4KSR.from_checkpoint(model_dir)
    urls = data.shard_urls([str(Workspace(ws).shard_dir(dataset))])
    first = next(iter(wds.WebDataset(urls, shardshuffle=False, empty_check=False)))
    lr = data.decode_png(first["lr.png"])
    t0 = time.perf_counter()
    sr = model.upscale(lr)
    up_s = time.perf_counter() - t0
    path = ws / "op4ksr-demo.png"
    cv2.imwrite(str(path), cv2.cvtColor(sr, cv2.COLOR_RGB2BGR))
    return {
        "model": str(model_dir),
        "lr_size": f"{lr.shape[1]}x{lr.shape[0]}",
        "sr_size": f"{sr.shape[1]}x{sr.shape[0]}",
        "upscale_seconds": up_s,
        "output": str(path),
        "rope_theta": model.theta,
    }


def run(workspace: str | Path, dataset: str = "train4k", steps: int = 2, crop: int = 128) -> dict:
    """:func:`prepare`, ``steps`` supervised steps in this process, :func:`upscale_first`; returns a summary."""
    from training.sr import supervised
    from training.sr.config import TrainConfig

    cfg = TrainConfig.model_validate(prepare(workspace, dataset, steps, crop))
    t0 = time.perf_counter()
    trained = supervised.train(supervised.setup(cfg))
    train_s = time.perf_counter() - t0
    up = upscale_first(workspace, Path(cfg.out) / "model", dataset)
    return {"steps": trained.step, "loss": trained.history[-1]["total"], "train_seconds": train_s, **up}
