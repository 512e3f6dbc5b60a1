"""Effective resolution (pipelines/curate/effres.py) on real pictures: how many native photos it calls upscaled, how
many upscaled ones it catches, per factor and kernel, and what it costs per 4K picture.

Natives: the photographs among Debian's wallpapers (``/usr/share/backgrounds``, the photos labelled in
tests/pipelines/curate/test_filters.py) and scikit-image's camera samples. Upscaled: each native shrunk by f with
an area filter (a sharp picture of 1/f the size) and brought back to its size by f = 1.5 or 2 with Pillow's bicubic,
Lanczos and bilinear filters and OpenCV's bicubic, each as is and re-saved as JPEG q90 (4:2:0). Also reported, as
a known limit: natives *downscaled* by 4/3 (OpenCV INTER_AREA, Pillow Lanczos), which carry the same periodicity.

    .venv/bin/python benchmarks/effective_resolution.py [--out benchmarks/results/effective_resolution.md]

The table uses the thresholds of ``FilterSettings``; the per-picture evidence goes to a JSON next to the table so
thresholds can be re-chosen without measuring again.

Measured 2026-12-07 (benchmarks/results/effective_resolution.md; 2 cores at load ~20, other jobs running):
27 Debian wallpaper photos + 7 scikit-image photos, crops of at most 3840x2400.
- Natives called upscaled: 2 of 34, both 2x: ``greentock`` and ``analogpattern_by_Peter_Nerlich`` (2880x2160,
  R(2) 5.65 and 6.18, sharpness 0.36, i.e. in the range of bicubic 2x upscales, so ``blurry`` before this rule
  existed). Highest native period SNR 41 (``Dragonfly_by_Bolly``; on the full 4224x3168 file it is 75 and the
  picture is called ~1.47x from ~2881x2161: 4224x3168 is exactly 1.4667 x 2880x2160).
- 1.5x caught: Pillow bicubic / Lanczos / bilinear 100 % as saved, 94 / 91 / 74 % after JPEG q90; OpenCV bicubic
  (a = -0.75, weaker periodicity) 88 %, 47 % after q90.
- 2x caught: 94 / 94 / 85 % (Pillow bicubic / Lanczos / bilinear), 94 % OpenCV bicubic; 79 / 82 / 74 / 88 % after
  q90. Misses are soft or noisy pictures (Storm, FreshFlower), whose 2x upscale still has a high R(2).
- Known limit: natives downscaled by 4/3 are called 1.5x: 91 % with OpenCV INTER_AREA, 50 % with Pillow Lanczos.
- Cost: 80-105 ms per 3840x2160 picture (periodicity ~40 ms, R(2) ~55 ms of which 26 ms choosing tiles).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.curate.effres import effective_scale, measure_effres
from pipelines.curate.filters import FilterSettings

Image.MAX_IMAGE_PIXELS = None
B = "/usr/share/backgrounds"
MATE = [
    "Aqua",
    "Blinds",
    "Dune",
    "FreshFlower",
    "Garden",
    "GreenMeadow",
    "LadyBird",
    "RainDrops",
    "Storm",
    "TwoWings",
    "Wood",
    "YellowFlower",
]
WALLPAPERS = [
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg",
    "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "greentock_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
]
PHOTOS = [f"{B}/mate/nature/{n}.jpg" for n in MATE] + [f"{B}/{n}" for n in WALLPAPERS]
SKIMAGE = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
]
KERNELS = {
    "pil-bicubic": Image.BICUBIC,
    "pil-lanczos": Image.LANCZOS,
    "pil-bilinear": Image.BILINEAR,
    "cv-bicubic": cv2.INTER_CUBIC,
}


def natives() -> list[tuple[str, np.ndarray]]:
    import skimage.data

    paths = [p for p in PHOTOS if os.path.exists(p)] + [os.path.join(skimage.data.data_dir, n) for n in SKIMAGE]
    out = []
    for p in paths:  # a centre crop of at most 3840x2400: the 4K class this curation is for, and a bounded cost
        rgb = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
        h, w = rgb.shape[:2]
        ch, cw = min(h, 2400 if w >= h else 3840), min(w, 3840 if w >= h else 2400)
        out.append(
            (Path(p).name, np.ascontiguousarray(rgb[(h - ch) // 2 : (h + ch) // 2, (w - cw) // 2 : (w + cw) // 2]))
        )
    return out


def resize(rgb: np.ndarray, size: tuple[int, int], kernel: str) -> np.ndarray:
    if kernel.startswith("cv-"):
        return cv2.resize(rgb, size, interpolation=KERNELS[kernel])
    return np.asarray(Image.fromarray(rgb).resize(size, KERNELS[kernel]))


def upscaled(rgb: np.ndarray, f: float, kernel: str) -> np.ndarray:
    """A sharp picture of 1/f the size (area filter), brought back to the native size by ``kernel``."""
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (round(w / f), round(h / f)), interpolation=cv2.INTER_AREA)
    return resize(small, (w, h), kernel)


def jpeg(rgb: np.ndarray, q: int = 90) -> np.ndarray:
    buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])[1]
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def evidence(rgb: np.ndarray) -> dict:
    ev = measure_effres(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    return {"snr": ev.period_snr, "factor": ev.period_factor, "r2": ev.reupsample_ratio}


def measure_all(log: Path) -> list[dict]:
    rows = []
    for name, rgb in natives():
        rows.append({"image": name, "case": "native", "width": rgb.shape[1], **evidence(rgb)})
        for f in (1.5, 2.0):
            for kernel in KERNELS:
                up = upscaled(rgb, f, kernel)
                rows.append({"image": name, "case": f"x{f} {kernel}", **evidence(up)})
                rows.append({"image": name, "case": f"x{f} {kernel} q90", **evidence(jpeg(up))})
        h, w = rgb.shape[:2]
        for kernel in ("cv-area", "pil-lanczos"):
            size = (round(w * 3 / 4), round(h * 3 / 4))
            small = (
                cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                if kernel == "cv-area"
                else resize(rgb, size, kernel)
            )
            rows.append({"image": name, "case": f"down 4/3 {kernel}", **evidence(small)})
        with log.open("a") as f:
            f.write(json.dumps(rows[-19:]) + "\n")
        print(name, flush=True)
    return rows


def table(rows: list[dict], s: FilterSettings) -> str:
    def scale(r):
        return effective_scale(_Ev(r), s.min_period_snr, s.max_reupsample_ratio)

    cases = list(dict.fromkeys(r["case"] for r in rows))
    out = ["| case | pictures | called upscaled | rate | estimates |", "|---|---|---|---|---|"]
    for case in cases:
        sel = [r for r in rows if r["case"] == case]
        called = [scale(r) for r in sel if scale(r) > s.max_effective_scale]
        est = sorted({f"{x:.2f}" for x in called})
        out.append(f"| {case} | {len(sel)} | {len(called)} | {len(called) / len(sel):.0%} | {', '.join(est)} |")
    return "\n".join(out)


class _Ev:
    def __init__(self, r):
        self.period_snr, self.period_factor, self.reupsample_ratio = r["snr"], r["factor"], r["r2"]


def cost_ms(repeats: int = 5) -> float:
    """Median ms of measure_effres on the grey of a 3840x2160 crop of the largest native photo."""
    rgb = np.asarray(Image.open(f"{B}/Kleiber_by_Lukas_Baubkus.jpg").convert("RGB"))[:2160, :3840]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        measure_effres(gray)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/effective_resolution.md")
    ap.add_argument("--evidence", help="reuse a JSON of measured evidence instead of measuring")
    args = ap.parse_args()
    out = Path(args.out)
    if args.evidence:
        rows = json.loads(Path(args.evidence).read_text())
    else:
        rows = measure_all(out.with_suffix(".jsonl"))
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    s = FilterSettings()
    text = (
        f"thresholds: min_period_snr {s.min_period_snr}, max_reupsample_ratio {s.max_reupsample_ratio}, "
        f"max_effective_scale {s.max_effective_scale}\n\n{table(rows, s)}\n\n"
        f"cost: {cost_ms():.1f} ms per 3840x2160 picture (median of 5; grey conversion excluded)\n"
    )
    print(text)
    out.write_text(text)


if __name__ == "__main__":
    main()
