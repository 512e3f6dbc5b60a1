"""Effective resolution (pipelines/curate/effres.py) on real pictures: how many native photos (and downscales of
them) it calls upscaled, how many upscaled ones it catches, per factor, kernel and JPEG quality, and what it costs per
4K picture.

Natives: the photographs among Debian's wallpapers (``/usr/share/backgrounds``, the photos labelled in
tests/pipelines/curate/photo_labels.csv) and scikit-image's camera samples, centre crops of at most 3840x2400.
Upscaled: each native shrunk by f with an area filter (a sharp picture of 1/f the size) and brought back to its size
by f = 1.5 or 2 with Pillow's bicubic / Lanczos / bilinear and OpenCV's bicubic / Lanczos4 / linear filters, each as
is and re-saved as JPEG q95, q90 and q75 (OpenCV, 4:2:0); 3x Pillow bicubic and 4x OpenCV bicubic at q90 as extras.
Downscaled: each native shrunk by 1.2, 4/3, 1.5, 5/3, 2 and 2.5 with OpenCV's area and Pillow's Lanczos filters
(legitimate sources: a camera picture published smaller).
Four natives are soft (``SOFT``: looked at, see below) and reported in their own column; rates are over the other 30.

    nice -n 10 .venv/bin/python benchmarks/effective_resolution.py [--out benchmarks/results/effective_resolution.md]
    .venv/bin/python benchmarks/effective_resolution.py --evidence benchmarks/results/effective_resolution.json

The tables use the thresholds of ``FilterSettings``; the per-picture evidence (period_snr, factor, R(1.5), R(2))
goes to a JSON next to the table, so thresholds can be re-chosen with ``--evidence`` without measuring again (the
operating-point lines do exactly that).

Measured 2026-12-07 (effres/2; 2 processes on 2 cores at load ~11-16, other helpers' jobs running; ~9 min):
- 1.5x caught 81 % on average over the 24 kernel x JPEG cases (effres/1's rule on the same evidence: 75 %): 87-93 %
  as upscaled, 83-93 % after q95, 73-87 % after q90, 57-70 % after q75 (bilinear and OpenCV bicubic weakest).
- 2x caught 86 % (effres/1 rule: 80 %): 83-97 % as upscaled, 70-83 % after q75. Misses are soft or noisy pictures
  (Storm, FreshFlower), whose upscales still have a high R(2).
- Sharp natives rejected: 0 of 30. Their downscales: 8.6 % (effres/1 rule: 28.6 %); worst 20 % at 4/3 with OpenCV's
  area filter (effres/1 rule: 93 %), 0 % at 2x. The misses are the softer photos (Bridge, sunset, Wine, retina).
- Soft natives, all 4 called upscaled (effres/1's rule: 3, not free): greentock, free and analogpattern_by_Peter_
  Nerlich (2880x2160; their most detailed regions at 4x show edges 3-6 px wide) and Dragonfly_by_Bolly (period SNR
  88, factor 1.467: 4224x3168 is exactly 1.4667 x 2880x2160; its most detailed region at 4x looks smeared like an
  upscale).
- Cost: ~120 ms per 3840x2160 picture at load ~11 (periodicity over 1024 rows and columns, R(1.5) and R(2) on 12
  tiles).
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
from pipelines.curate.effres import EFFRES_VERSION, EffRes, measure_effres
from pipelines.curate.filters import FilterSettings, scale_under

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
    "cv-lanczos4": cv2.INTER_LANCZOS4,
    "cv-linear": cv2.INTER_LINEAR,
    "cv-area": cv2.INTER_AREA,
}
UPSCALERS = ["pil-bicubic", "pil-lanczos", "pil-bilinear", "cv-bicubic", "cv-lanczos4", "cv-linear"]
QUALITIES = [None, 95, 90, 75]  # JPEG re-save after the upscale (None: as upscaled)
DOWNSCALES = [1.2, 4 / 3, 1.5, 5 / 3, 2.0, 2.5]  # natives shrunk by these (a photo resized for publishing)
DOWNSCALERS = ["cv-area", "pil-lanczos"]


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
    return {"snr": ev.period_snr, "factor": ev.period_factor, "r2": ev.reupsample_ratio, "r15": ev.reupsample_ratio_15}


def measure_one(item: tuple[str, np.ndarray]) -> list[dict]:
    """Every case of one native picture: itself, its upscales (factor x kernel x JPEG), its downscales."""
    name, rgb = item
    h, w = rgb.shape[:2]
    rows = [{"image": name, "case": "native", "width": w, "height": h, **evidence(rgb)}]
    for f in (1.5, 2.0):
        for kernel in UPSCALERS:
            up = upscaled(rgb, f, kernel)
            for q in QUALITIES:
                case = f"x{f} {kernel}" + ("" if q is None else f" q{q}")
                rows.append({"image": name, "case": case, **evidence(up if q is None else jpeg(up, q))})
    for f, kernel in ((3.0, "pil-bicubic"), (4.0, "cv-bicubic")):
        rows.append({"image": name, "case": f"x{f} {kernel} q90", **evidence(jpeg(upscaled(rgb, f, kernel)))})
    for d in DOWNSCALES:
        for kernel in DOWNSCALERS:
            small = resize(rgb, (round(w / d), round(h / d)), kernel)
            rows.append({"image": name, "case": f"down {d:.2f} {kernel}", **evidence(small)})
    return rows


def measure_all(log: Path, workers: int = 2) -> list[dict]:
    from multiprocessing import Pool

    rows = []
    with Pool(workers) as pool, log.open("w") as f:
        for got in pool.imap(measure_one, natives()):
            rows += got
            f.write(json.dumps(got) + "\n")
            f.flush()
            print(got[0]["image"], flush=True)
    return rows


# Natives whose own effective resolution is below their pixel count, checked by looking at 4x crops of their most
# detailed region: the three 2880x2160 Peter Nerlich pictures are soft (edges 3-6 px wide), Dragonfly_by_Bolly is
# smeared like an upscale (4224x3168 = 1.4667 x 2880x2160). Reported in their own column, not as natives.
SOFT = {
    "greentock_by_Peter_Nerlich.jpg",
    "free_by_Peter_Nerlich.jpg",
    "analogpattern_by_Peter_Nerlich.jpg",
    "Dragonfly_by_Bolly.jpg",
}


def estimate(r: dict, s: FilterSettings | None) -> float:
    """The decision of ``s`` (None: effres/1's, snr >= 60 else R(2) < 6.5, without R(1.5)) on one evidence row."""
    if s is None:  # the effres/1 decision, written out: effective_scale no longer calls a peak without R(1.5)
        if r["snr"] >= 60.0:
            return round(r["factor"], 3)
        return 2.0 if r["r2"] is not None and r["r2"] < 6.5 else 1.0
    return scale_under(EffRes(r["snr"], r["factor"], r["r2"], r["r15"]), s)


def table(rows: list[dict], s: FilterSettings) -> str:
    cases = list(dict.fromkeys(r["case"] for r in rows))
    out = [
        "| case | sharp pictures | called upscaled | rate | estimates | effres/1 rate | soft natives called |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        sel = [r for r in rows if r["case"] == case and r["image"] not in SOFT]
        soft = [r for r in rows if r["case"] == case and r["image"] in SOFT]
        called = [x for x in (estimate(r, s) for r in sel) if x > s.max_effective_scale]
        old = sum(estimate(r, None) > s.max_effective_scale for r in sel)
        soft_called = sum(estimate(r, s) > s.max_effective_scale for r in soft)
        est = sorted({f"{x:.2f}" for x in called})
        out.append(
            f"| {case} | {len(sel)} | {len(called)} | {len(called) / len(sel):.0%} | {', '.join(est)} | "
            f"{old / len(sel):.0%} | {soft_called}/{len(soft)} |"
        )
    return "\n".join(out)


def summary(rows: list[dict], s: FilterSettings | None) -> str:
    """Mean (min over kernels and JPEG qualities) catch rate per factor, and false-reject rates, sharp natives only."""
    limit = FilterSettings().max_effective_scale

    def rate(prefix: str) -> list[float]:
        cases = dict.fromkeys(r["case"] for r in rows if r["case"].startswith(prefix))
        return [
            float(np.mean([estimate(r, s) > limit for r in rows if r["case"] == c and r["image"] not in SOFT]))
            for c in cases
        ]

    x15, x2, nat, down = rate("x1.5"), rate("x2.0"), rate("native"), rate("down")
    return (
        f"1.5x caught {np.mean(x15):.0%} (worst case {min(x15):.0%}), 2x caught {np.mean(x2):.0%} (worst "
        f"{min(x2):.0%}), natives rejected {nat[0]:.0%}, downscaled natives rejected {np.mean(down):.1%} (worst case "
        f"{max(down):.0%})"
    )


OPERATING_POINTS = {  # (max_reupsample_ratio_15, strong_period_snr, max_reupsample_ratio_15_strong)
    "fewer false rejects": (4.0, 1e9, 4.0),
    "default": None,
    "more caught": (5.5, 30.0, 6.0),
}


def operating_points(rows: list[dict]) -> str:
    """The summary under other R(1.5) bounds (other thresholds as configured): the trade-off a team can choose."""
    out = []
    for name, point in OPERATING_POINTS.items():
        s = FilterSettings()
        if point is not None:
            s.max_reupsample_ratio_15, s.strong_period_snr, s.max_reupsample_ratio_15_strong = point
        bounds = f"R(1.5) < {s.max_reupsample_ratio_15}, or < {s.max_reupsample_ratio_15_strong} at snr >= "
        out.append(f"- {name} ({bounds}{s.strong_period_snr:g}): {summary(rows, s)}")
    return "\n".join(out)


def per_native(rows: list[dict], s: FilterSettings) -> str:
    out = [
        "| picture | crop | period snr | factor | R(1.5) | R(2) | estimate | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["case"] == "native"):
        f = estimate(r, s)
        r15 = "n/a" if r["r15"] is None else f"{r['r15']:.2f}"
        r2 = "n/a" if r["r2"] is None else f"{r['r2']:.2f}"
        out.append(
            f"| {r['image']} | {r['width']}x{r['height']} | {r['snr']:.1f} | {r['factor']:.3f} | {r15} | {r2} | "
            f"{f:.2f} | {'soft (looked at)' if r['image'] in SOFT else ''} |"
        )
    return "\n".join(out)


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
        f"# Effective resolution ({EFFRES_VERSION})\n\nthresholds: min_period_snr {s.min_period_snr}, "
        f"max_reupsample_ratio_15 {s.max_reupsample_ratio_15} (strong_period_snr {s.strong_period_snr}: "
        f"{s.max_reupsample_ratio_15_strong}), max_reupsample_ratio {s.max_reupsample_ratio}, "
        f"max_effective_scale {s.max_effective_scale}\n\n"
        f"- this version: {summary(rows, s)}\n- effres/1 rule on the same evidence: {summary(rows, None)}\n\n"
        f"Other operating points (FilterSettings):\n\n{operating_points(rows)}\n\n"
        f"{table(rows, s)}\n\nPer native picture (centre crop measured):\n\n{per_native(rows, s)}\n\n"
        f"cost: {cost_ms():.1f} ms per 3840x2160 picture (median of 5; grey conversion excluded)\n"
    )
    print(text)
    out.write_text(text)


if __name__ == "__main__":
    main()
