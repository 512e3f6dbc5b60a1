"""Hashing before the expensive build: N identical copies of a 4K photo cost one build plus N decodes.

Builds the units of a corpus of N copies (unit_size 1) in sorted order, where every copy after the first finds the
lowest URI's pixel claim and skips crop/degrade/encode, and in reversed order, where no copy can rely on a lower one
and all N are built (what every copy cost before). Prints both times, their ratio, and the time of one decode +
measure for scale. Single process, so the ratio is the work saved, not a runner effect.

    .venv/bin/python benchmarks/hash_first.py [--copies 6]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.curate import build as steps
from pipelines.curate.decode import decode_image
from pipelines.curate.filters import measure

PHOTO = "/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"  # 6028x3391 camera photo; a UHD crop of it


def build_all(src: Path, ws: Path, reverse: bool) -> tuple[float, int]:
    cfg = steps.CurateConfig(unit_size=1, holdout_permille=0)
    p = steps.plan(str(src), cfg, workspace=ws)
    units = p.units[::-1] if reverse else p.units
    t = time.perf_counter()
    built = sum(steps.build_unit(u, p.listing.root, p.listing.origin, ws, cfg)["built"] for u in units)
    return time.perf_counter() - t, built


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        rgb = np.asarray(Image.open(PHOTO).convert("RGB"))[:2160, :3840]
        Image.fromarray(rgb).save(src / "c000.jpg", quality=95)
        for i in range(1, args.copies):
            shutil.copy(src / "c000.jpg", src / f"c{i:03d}.jpg")
        data = (src / "c000.jpg").read_bytes()
        t = time.perf_counter()
        measure(decode_image(data, "c000.jpg").rgb)
        decode_s = time.perf_counter() - t
        first_s, first_built = build_all(src, Path(tmp) / "sorted", reverse=False)
        all_s, all_built = build_all(src, Path(tmp) / "reversed", reverse=True)
    print(f"{args.copies} copies of a 3840x2160 JPEG; one decode + measure {decode_s:.2f} s")
    print(f"hash first (sorted order): {first_s:.1f} s, {first_built} built")
    print(f"every copy built (reversed order): {all_s:.1f} s, {all_built} built")
    print(f"ratio {first_s / all_s:.2f}")


if __name__ == "__main__":
    main()
