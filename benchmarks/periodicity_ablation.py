"""Periodicity ablation on the CPU: a tiny OP4KSR trained with and without L_AP, evaluated with and without RFR.

Run: ``python benchmarks/periodicity_ablation.py [--steps 300] [--vae-steps 300] [--lambda-ap 10] [--out DIR]``
(a few minutes on 2 cores). It runs the real stage-1 recipe (VAE, LoRA, L_AP) end to end, which is what it is kept
for; its backbone is random and never learned positions, so it cannot show RFR at work: the RFR question and the L_AP
weight are measured in benchmarks/rope_extrapolation.py (a transformer trained from scratch). What it does, all in
this process:

1. Tiny random backbone (training.sr.tiny). Its random VAE cannot reconstruct anything, so it is first fitted as an
   autoencoder (L1, ``--vae-steps``) on 128² crops of the training photos; the same VAE serves every arm.
2. Curated-style shards (pipelines.store.shards.ShardWriter, ``hr.png``/``lr.png``/``json``) of 128² HR tiles of
   scikit-image photos, LR = area ×1/4; held-out photos (chelsea, camera, moon, coins) for evaluation.
3. Three supervised runs (training.sr.supervised, same seed, same data order) of ``--steps`` LoRA steps at
   ``--crop`` (128² = a 4×4 token grid, the smallest crop whose L_AP lag range reaches the 32-px token stride):
   λ_AP = 0; λ_AP = ``--lambda-ap`` with each R normalised by its own R(0) ("self"); and by the HR's R(0) ("ref").
4. Each trained model upscales the held-out LR images at full size (HR 288-512 px: token grids up to 16×16, 4× the
   training grid per axis, the 64 → 128 situation of Flux → OP4KSR, exaggerated) with RFR off and with the ntk and
   yarn rules (pretrain_grid = crop / 32, target_grid = 16), applied at evaluation only (train-short / test-long).
5. Table: periodicity peak and stride-32 lattice mean (pipelines.bench.metrics.periodicity, the benchmark score), the
   share of images above its artefact threshold, PSNR-Y; bicubic, the HR images and the HR through the VAE alone
   as references.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from pipelines.bench.metrics import PERIODIC_ARTEFACT, periodicity, psnr_y

TRAIN_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "brick",
    "grass",
    "gravel",
)
EVAL_PHOTOS = {"chelsea": (288, 448), "camera": (512, 512), "moon": (512, 512), "coins": (288, 384)}
SCALE, CROP = 4, 128


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return np.ascontiguousarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])


def _down(hr: np.ndarray) -> np.ndarray:
    return cv2.resize(hr, (hr.shape[1] // SCALE, hr.shape[0] // SCALE), interpolation=cv2.INTER_AREA)


def write_shards(out: Path) -> tuple[Path, list[np.ndarray]]:
    from pipelines.store.shards import ShardWriter
    from pipelines.store.workspace import encode_png

    writer, tiles = ShardWriter(out, max_count=64), []
    for name in TRAIN_PHOTOS:
        img = _photo(name)
        if max(img.shape[:2]) > 800:  # retina / hubble: bring them to the others' scale
            img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        for y in range(0, img.shape[0] - CROP + 1, CROP):
            for x in range(0, img.shape[1] - CROP + 1, CROP):
                hr = np.ascontiguousarray(img[y : y + CROP, x : x + CROP])
                key = f"{name}-{y}-{x}".replace("_", "")
                meta = json.dumps({"source": name, "y": y, "x": x}).encode()
                writer.write(key, {"hr.png": encode_png(hr, 1), "lr.png": encode_png(_down(hr), 1), "json": meta})
                tiles.append(hr)
    writer.finish("ablation")
    return out, tiles


def fit_vae(vae_dir: Path, tiles: list[np.ndarray], steps: int, crop: int = 64, seed: int = 0) -> float:
    """Fit the tiny F16 VAE as an autoencoder (L1 on random ``crop``² sub-tiles, batch 4); overwrite it in place."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_dir)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 127.5 - 1
    loss = torch.tensor(0.0)
    for _ in range(steps):
        y0, x0 = rng.integers(0, CROP - crop + 1, 2)
        x = x_all[rng.choice(len(x_all), 4, replace=False), :, y0 : y0 + crop, x0 : x0 + crop]
        loss = (vae.decode(vae.encode(x).latent_dist.mode()).sample - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.save_pretrained(vae_dir)
    return float(loss.detach())


def _hr_of(pairs: list[tuple[np.ndarray, np.ndarray]]):
    """The 'upscaler' that returns the ground truth of each LR (the HR reference row)."""
    by_lr = {id(lr): hr for hr, lr in pairs}
    return lambda lr: by_lr[id(lr)]


def _vae_round_trip(vae_dir: Path, hr_of):
    """D(E(HR)): what the frozen tiny VAE alone does to the ground truth (its own artefacts, no SR involved)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_dir).eval()

    @torch.no_grad()
    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(hr_of(lr)).permute(2, 0, 1)[None].float() / 127.5 - 1
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
        return ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()

    return run


def evaluate(upscale, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    rows = []
    for hr, lr in pairs:
        sr = upscale(lr)
        p = periodicity(sr)
        rows.append(
            (
                p.peak,
                p.stride_mean,
                p.peak > PERIODIC_ARTEFACT or p.stride_mean > PERIODIC_ARTEFACT,
                psnr_y(sr, hr, SCALE),
            )
        )
    a = np.array(rows, dtype=float)
    return {
        "peak": a[:, 0].mean(),
        "stride_mean": a[:, 1].mean(),
        "flagged": int(a[:, 2].sum()),
        "psnr": a[:, 3].mean(),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="LoRA steps per arm")
    ap.add_argument("--vae-steps", type=int, default=1000, help="autoencoder steps for the tiny VAE")
    ap.add_argument("--lambda-ap", type=float, default=10.0, help="L_AP weight of the +L_AP arm")
    ap.add_argument("--batch", type=int, default=1, help="HR crops per step")
    ap.add_argument("--crop", type=int, default=128, help="HR training crop (multiple of 32; the shards hold 128²)")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: ~3x faster on a busy 2-core machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from training.sr import supervised
    from training.sr.config import RFRConfig, TrainConfig
    from training.sr.model import OP4KSR
    from training.sr.rfr import apply_rfr
    from training.sr.tiny import build_tiny_op4ksr

    work = args.out or Path(tempfile.mkdtemp(prefix="op4ksr-ablation-"))
    t0 = time.perf_counter()
    tdir, vdir = build_tiny_op4ksr(work / "tiny", seed=0)
    shards, tiles = write_shards(work / "shards")
    vae_loss = fit_vae(vdir, tiles, args.vae_steps)
    print(
        f"{len(tiles)} training tiles of {CROP}²; tiny VAE fitted: L1 {vae_loss:.4f} after {args.vae_steps} steps "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    pairs = []
    for name, (h, w) in EVAL_PHOTOS.items():
        img = _photo(name)
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        hr = np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w])
        pairs.append((hr, _down(hr)))

    rows = [
        {"arm": "HR (reference)", "rfr": "-", **evaluate(_hr_of(pairs), pairs)},
        {
            "arm": "bicubic",
            "rfr": "-",
            **evaluate(
                lambda lr: cv2.resize(lr, (lr.shape[1] * SCALE, lr.shape[0] * SCALE), interpolation=cv2.INTER_CUBIC),
                pairs,
            ),
        },
    ]
    rows.append({"arm": "VAE round trip of HR", "rfr": "-", **evaluate(_vae_round_trip(vdir, _hr_of(pairs)), pairs)})
    for lam, norm in ((0.0, "ref"), (args.lambda_ap, "self"), (args.lambda_ap, "ref")):
        arm = "L2 only" if lam == 0 else f"L2+{lam:g}·L_AP/{norm}"
        tag = f"ap{lam:g}-{norm}"
        cfg = TrainConfig.model_validate(
            {
                "model": {"transformer": str(tdir), "vae": str(vdir), "rfr": {"mode": "none"}},
                "data": {"shards": [str(shards)], "crop": args.crop, "batch_size": args.batch, "shuffle_buffer": 32},
                "loss": {"ap": lam, "ap_norm": norm},
                "steps": args.steps,
                "lr": 5e-4,
                "out": str(work / f"run-{tag}"),
                "save_every": args.steps,
                "log_every": 50,
                "resume": False,
                "seed": 0,
            }
        )
        t1 = time.perf_counter()
        run = supervised.train(supervised.setup(cfg))
        last = run.history[-20:]
        print(
            f"{arm}: {args.steps} steps in {time.perf_counter() - t1:.0f} s; last-20 mean total "
            f"{np.mean([r['total'] for r in last]):.4f}, pixel_l2 {np.mean([r['pixel_l2'] for r in last]):.4f}"
            + (f", L_AP {np.mean([r['ap'] for r in last]):.5f}" if lam else ""),
            flush=True,
        )
        model = OP4KSR.from_checkpoint(work / f"run-{tag}" / "model", device="cpu")
        for mode in ("none", "ntk", "yarn"):
            rfr = RFRConfig(mode=mode, pretrain_grid=args.crop // 32, target_grid=16)
            model.theta = apply_rfr(model.transformer, rfr)
            rows.append({"arm": arm, "rfr": mode, **evaluate(model.upscale, pairs)})
    print_table(rows, len(pairs))
    print(f"total {time.perf_counter() - t0:.0f} s; work folder {work}")
    return rows


def print_table(rows: list[dict], n: int) -> None:
    print(f"\nperiodicity of x4 outputs on {n} held-out photos (HR 288x384 .. 512x512), tiny OP4KSR, CPU")
    print(f"{'arm':<22}{'RFR':<6}{'peak':>9}{'stride32':>10}{'> thr':>7}{'PSNR-Y':>8}")
    for r in rows:
        print(
            f"{r['arm']:<22}{r['rfr']:<6}{r['peak']:>9.4f}{r['stride_mean']:>10.4f}{r['flagged']:>5}/{n}"
            f"{r['psnr']:>8.2f}"
        )
    print(f"peak / stride32 = bench.metrics.periodicity (stride 32 px); > thr: images above {PERIODIC_ARTEFACT}")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
