"""False positives and detection rate of the periodicity flag (bench.metrics.periodicity_excess) on real photos.

Run: ``python benchmarks/periodicity_flag.py [--crops-per-photo 4] [--side 256] [--amplitude 0.01] [--json OUT]``
(~2-4 min on 2 cores). What it measures, all in this process:

1. LR = native-resolution ``side``^2 crops of real photographs (Debian mate-backgrounds ``nature/*.jpg`` when
   installed, plus scikit-image's photos), every other one through JPEG q75 (OpenCV), so the 8x8 blocks of the LR
   land on the 32-px lattice after x4.
2. Clean upscales: bicubic and Lanczos x4 of each LR. Planted: the same upscales plus a 32-px grid at
   ``--amplitude`` (a share of the 0..255 range, 0.01 = 2.55 levels) with a random phase, in two forms: ``lines``
   (1-px lines every 32 px in both axes) and ``texture`` (a random 32x32 tile of that standard deviation, repeated:
   closer to a token-repeated artefact).
3. Scores: the absolute :func:`periodicity` (peak, stride mean; its flag: either > PERIODIC_ARTEFACT) and the
   relative :func:`periodicity_excess` against the bicubic of the same LR (its ``flag``).
4. Table: the share flagged per group (false positives on clean upscales, detection on planted ones).
5. ``--models realcugan-x4-conservative,srmd-x4,...``: also the flag rate on the ncnn SR models' outputs of the
   same LR crops (no ground truth of "no artefact" there: what the flag says about real SR networks).

The bicubic upscale against its own reference scores D = 0 exactly, so its false-positive rate is 0 by
construction; Lanczos (another kernel, sharper) is the real test of the clean side.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time

import cv2
import numpy as np

from pipelines.bench.metrics import PERIODIC_ARTEFACT, periodicity, periodicity_excess

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field")
SCALE, STRIDE = 4, 32


def photos() -> list[tuple[str, np.ndarray]]:
    out = []
    for path in sorted(glob.glob("/usr/share/backgrounds/mate/nature/*.jpg")):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is not None:
            out.append((path.rsplit("/", 1)[-1], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    from skimage import data

    for name in SKIMAGE_PHOTOS:
        try:
            img = getattr(data, name)()
        except Exception:  # a data file scikit-image would have to download: skip it
            continue
        out.append((name, np.ascontiguousarray(img[..., :3])))
    return out


def lr_crops(side: int, per_photo: int, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    crops = []
    for name, img in photos():
        h, w = img.shape[:2]
        if min(h, w) < side:
            continue
        for k in range(per_photo):
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = np.ascontiguousarray(img[y : y + side, x : x + side])
            if len(crops) % 2 == 1:  # every other LR through JPEG q75
                _, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 75])
                crop = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                name_k = f"{name}#{k}-q75"
            else:
                name_k = f"{name}#{k}"
            crops.append((name_k, crop))
    return crops


def plant(img: np.ndarray, kind: str, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    oy, ox = (int(v) for v in rng.integers(0, STRIDE, 2))
    if kind == "lines":
        yy, xx = np.mgrid[0:h, 0:w]
        pattern = (((yy - oy) % STRIDE == 0) | ((xx - ox) % STRIDE == 0)).astype(np.float32)
    else:
        tile = rng.standard_normal((STRIDE, STRIDE)).astype(np.float32)
        pattern = np.roll(np.tile(tile, (h // STRIDE + 1, w // STRIDE + 1))[:h, :w], (oy, ox), (0, 1))
    out = img.astype(np.float32) + (amplitude * 255.0) * pattern[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def measure(side: int, per_photo: int, amplitude: float, seed: int = 0, models: tuple[str, ...] = ()) -> list[dict]:
    from pipelines.models.ncnn_sr import NcnnUpscaler

    nets = {name: NcnnUpscaler.load(name, threads=1) for name in models}
    rng = np.random.default_rng(seed + 1)
    rows = []
    for name, lr in lr_crops(side, per_photo, seed):
        size = (side * SCALE, side * SCALE)
        ref = cv2.resize(lr, size, interpolation=cv2.INTER_CUBIC)
        ups = {"bicubic": ref, "lanczos": cv2.resize(lr, size, interpolation=cv2.INTER_LANCZOS4)}
        ups |= {m: net.upscale(lr) for m, net in nets.items()}
        for up, img in ups.items():
            for kind in ("clean", "lines", "texture") if up in ("bicubic", "lanczos") else ("clean",):
                x = img if kind == "clean" else plant(img, kind, amplitude, rng)
                a = periodicity(x, stride=STRIDE)
                e = periodicity_excess(x, ref, stride=STRIDE)
                rows.append(
                    {
                        "image": name,
                        "upscale": up,
                        "kind": kind,
                        "abs_peak": a.peak,
                        "abs_stride": a.stride_mean,
                        "abs_flag": bool(a.peak > PERIODIC_ARTEFACT or a.stride_mean > PERIODIC_ARTEFACT),
                        "ex_peak": e.peak,
                        "ex_stride": e.stride_mean,
                        "ex_lag": list(e.lag),
                        "flag": e.flag,
                    }
                )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        f"{'group':24s} {'n':>4s} {'abs flag':>9s} {'new flag':>9s} {'ex_peak p50/p95/max':>26s} "
        f"{'ex_stride p50/p95/max':>28s}"
    )
    for up in dict.fromkeys(r["upscale"] for r in rows):
        for kind in ("clean", "lines", "texture"):
            g = [r for r in rows if r["upscale"] == up and r["kind"] == kind]
            if not g:
                continue
            pk = np.array([r["ex_peak"] for r in g])
            st = np.array([r["ex_stride"] for r in g])
            q = lambda v: "/".join(f"{x:.4f}" for x in (np.median(v), np.quantile(v, 0.95), v.max()))  # noqa: E731
            print(
                f"{up + ' ' + kind:24s} {len(g):4d} {np.mean([r['abs_flag'] for r in g]):9.1%} "
                f"{np.mean([r['flag'] for r in g]):9.1%} {q(pk):>26s} {q(st):>28s}"
            )


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops-per-photo", type=int, default=4)
    ap.add_argument("--side", type=int, default=256, help="LR crop side (px); the upscales are 4x that")
    ap.add_argument("--amplitude", type=float, default=0.01, help="planted grid amplitude, share of 255")
    ap.add_argument("--models", default="", help="comma-separated ncnn SR models to score as well")
    ap.add_argument("--json", help="write the per-image rows here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    models = tuple(m for m in args.models.split(",") if m)
    rows = measure(args.side, args.crops_per_photo, args.amplitude, models=models)
    print_table(rows)
    print(f"{len(rows)} scored images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return rows


if __name__ == "__main__":
    main()
