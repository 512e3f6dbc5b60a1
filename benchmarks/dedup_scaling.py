"""Crop-aware dedup at 1,000+ sources: the prefilter (``crop_candidates``) against comparing every pair.

What it measures
    N photo-like pictures (``tests/imagefixtures.natural_image``, one seed each, 256 px long side in five aspect
    ratios, as the curation's thumbnails are) plus ``--planted`` pictures that each come twice more, as a portrait
    re-crop and as a 0.6x rescale of a window (the forms crop matching exists for). Then, in one process:

    - ``crop_candidates`` over all N + 3 x planted views (wall and CPU time, pairs kept);
    - ``crop_match`` on ``--sample`` random pairs, to estimate what comparing all pairs would cost (the baseline:
      dedup before the prefilter compared every pair);
    - ``crop_match`` on ``--sample`` of the kept pairs: the prefiltered dedup's cost is the prefilter's plus that
      per kept pair;
    - on ``--recall-max`` views (every planted copy and the first pictures), ``find_duplicates`` end to end (prefilter,
      then ``crop_match`` with the batched coarse pass of ``coarse_screen``), which must find every planted copy;
      its CPU time per kept pair, beyond the prefilter, extrapolates the fast path to all N views.

    The headlines are the estimated all-pairs time / the fast path's, and the fast path against the prefilter
    followed by plain ``crop_match`` on every kept pair (before ``coarse_screen``). CPU seconds are printed beside wall
    seconds: on a shared, busy machine they are the steadier number.

Run
    .venv/bin/python benchmarks/dedup_scaling.py                 # 1,000 pictures + 20 planted (~1-2 min)
    .venv/bin/python benchmarks/dedup_scaling.py --count 3000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from imagefixtures import natural_image  # noqa: E402

from pipelines.curate.dedup import (  # noqa: E402
    DedupItem,
    MatchView,
    crop_candidates,
    crop_match,
    find_duplicates,
    small_gray,
)

ASPECTS = ((256, 144), (256, 171), (256, 192), (256, 256), (144, 256))  # 16:9, 3:2, 4:3, 1:1, 9:16 (w, h)


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """As the curation stores it: 256 px long side, JPEG q85, read back grey."""
    h, w = rgb.shape[:2]
    f = 256 / max(h, w)
    small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return cv2.imdecode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_GRAYSCALE)


def make_views(count: int, planted: int) -> tuple[list[str], list[MatchView], dict[str, str]]:
    names, views, copy_of = [], [], {}
    for i in range(count):
        w, h = ASPECTS[i % len(ASPECTS)]
        names.append(f"p{i:05d}")
        views.append(MatchView(small_gray(_thumb(natural_image(h * 4, w * 4, seed=10_000 + i)))))
    for i in range(planted):
        rgb = natural_image(1080, 1920, seed=90_000 + i)
        forms = {
            "orig": rgb,
            "portrait": rgb[:, 600 : 600 + 608],  # a 9:16 re-crop
            "x0.6": cv2.resize(rgb[100:1000, 200:1800], (960, 540), interpolation=cv2.INTER_AREA),
        }
        for form, pixels in forms.items():
            names.append(f"planted{i:03d}-{form}")
            views.append(MatchView(small_gray(_thumb(np.ascontiguousarray(pixels)))))
            if form != "orig":
                copy_of[names[-1]] = f"planted{i:03d}-orig"
    return names, views, copy_of


def clock(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="distinct pictures (default 1000)")
    ap.add_argument("--planted", type=int, default=20, help="pictures that also come as a crop and a rescale")
    ap.add_argument("--sample", type=int, default=100, help="pairs timed with crop_match (random; and kept ones)")
    ap.add_argument("--recall-max", type=int, default=300, help="views in the end-to-end find_duplicates run")
    args = ap.parse_args(argv)
    print(f"load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    (names, views, copy_of), wall, _ = clock(lambda: make_views(args.count, args.planted))
    n = len(views)
    pairs = n * (n - 1) // 2
    print(f"{n} views ({args.count} pictures + {args.planted} x 3 planted) made in {wall:.1f} s")

    cand, wall_c, cpu_c = clock(lambda: crop_candidates(views))
    print(
        f"crop_candidates: {len(cand):,} of {pairs:,} pairs kept; {wall_c:.1f} s wall, {cpu_c:.1f} s CPU "
        f"({cpu_c / pairs * 1e3:.3f} ms CPU a pair)"
    )

    rnd = random.Random(0)
    sample = [tuple(rnd.sample(range(n), 2)) for _ in range(args.sample)]
    _, _, cpu_s = clock(lambda: [crop_match(views[a], views[b], stop=0.96) for a, b in sample])
    per_pair = cpu_s / len(sample)
    print(
        f"crop_match on {len(sample)} random pairs: {per_pair * 1e3:.1f} ms CPU a pair -> all {pairs:,} pairs "
        f"~{per_pair * pairs / 3600:.1f} h CPU"
    )

    cand_sample = rnd.sample(cand, min(len(cand), args.sample))
    _, _, cpu_k = clock(lambda: [crop_match(views[a], views[b], stop=0.96) for a, b in cand_sample])
    per_cand = cpu_k / max(1, len(cand_sample))
    total = cpu_c + per_cand * len(cand)
    print(
        f"crop_match on {len(cand_sample)} kept pairs: {per_cand * 1e3:.1f} ms CPU a pair -> dedup with the "
        f"prefilter ~{total:.0f} s CPU; speed-up vs all pairs ~{per_pair * pairs / total:.0f}x"
    )
    # End to end on a subset (all planted copies + the first pictures, up to --recall-max views): recall, and the
    # cost per kept pair of the fast path (crop_match with the batched coarse pass, coarse_screen), which is then
    # extrapolated to all N views. pHash off (-1): only crop matching joins; the original has the most pixels.
    sub = [i for i in range(n) if i >= args.count or i < max(0, args.recall_max - 3 * args.planted)]
    sub_names, sub_views = [names[i] for i in sub], [views[i] for i in sub]
    items = [DedupItem(k, f"/{k}", f"sha-{k}", "0" * 16, 2 if k.endswith("orig") else 1, 1.0, None) for k in sub_names]
    kept_sub, _, cpu_cs = clock(lambda: crop_candidates(sub_views))
    dups, wall_d, cpu_d = clock(lambda: find_duplicates(items, -1, dict(zip(sub_names, sub_views, strict=True)), 0.96))
    found = {d.key: d.duplicate_of for d in dups}
    recalled = sum(found.get(k) == v for k, v in copy_of.items())
    wrong = sorted(k for k in found if k not in copy_of)
    per_fast = max(0.0, cpu_d - cpu_cs) / max(1, len(kept_sub))
    fast_total = cpu_c + per_fast * len(cand)
    print(
        f"find_duplicates on {len(sub)} views (prefilter + screened crop_match on {len(kept_sub):,} kept pairs): "
        f"{wall_d:.1f} s wall, {cpu_d:.1f} s CPU; planted copies found {recalled}/{len(copy_of)}; others merged: "
        f"{len(wrong)} {wrong[:5]}"
    )
    print(
        f"fast path: {per_fast * 1e3:.1f} ms CPU a kept pair (vs {per_cand * 1e3:.1f} ms unscreened) -> dedup of "
        f"{n} views ~{fast_total:.0f} s CPU ({fast_total / 60:.1f} min); "
        f"vs all pairs {per_pair * pairs / 3600:.1f} h: "
        f"~{per_pair * pairs / fast_total:.0f}x; vs prefilter without screen {total / 60:.0f} min: "
        f"~{total / fast_total:.1f}x"
    )
    print(f"load avg {os.getloadavg()[0]:.2f} at the end")
    return 0 if recalled == len(copy_of) else 1


if __name__ == "__main__":
    raise SystemExit(main())
