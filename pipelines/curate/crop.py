"""Detail-aware HR crop selection.

A centre crop of a landscape photo at 4K is often sky or bokeh; a super-resolution model learns nothing from it.
The rule here scores every candidate window by its mean *detail* and picks the best, then (for several crops per
image) the next best windows whose overlap with the chosen ones stays below ``max_overlap`` (greedy non-maximum
suppression, as in object detection).

Detail map: Sobel gradient magnitude of the luma on a copy downscaled by an integer factor so that its long side is at
most ``analysis_side`` px (INTER_AREA, so the map reflects real structure rather than aliasing), clipped at its 99th
percentile so that one high-contrast edge or a caption does not win over textured content. Window sums come from
an integral image, so scoring all windows on a grid with stride ``window/8`` costs O(pixels).
Crop corners are snapped to multiples of ``align`` px (default 32: the OP4KSR token stride, so a crop's token grid
lines up with the source's).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_VERSION = "crop/1"


@dataclass(slots=True)
class CropBox:
    x: int
    y: int
    w: int
    h: int
    score: float  # mean clipped gradient magnitude in the window, luma in [0, 1] per px

    def iou(self, other: CropBox) -> float:
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        return inter / (self.w * self.h + other.w * other.h - inter)


def detail_map(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Clipped Sobel magnitude of the luma of ``rgb`` downscaled by ``factor`` (float32, luma scaled to [0, 1])."""
    h, w = rgb.shape[:2]
    small = rgb if factor == 1 else cv2.resize(rgb, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    return np.minimum(mag, np.percentile(mag, 99) + 1e-6)


def choose_crops(
    rgb: np.ndarray,
    size: tuple[int, int],
    count: int = 1,
    max_overlap: float = 0.25,
    align: int = 32,
    analysis_side: int = 1024,
) -> list[CropBox]:
    """Up to ``count`` windows of ``size`` = (width, height) ranked by detail. Empty if the image is smaller."""
    h, w = rgb.shape[:2]
    cw, ch = size
    if w < cw or h < ch:
        return []
    factor = max(1, -(-max(h, w) // analysis_side))
    dm = detail_map(rgb, factor)
    integral = cv2.integral(dm, sdepth=cv2.CV_64F)
    # Candidate corners on a grid in full-resolution pixels, snapped to `align`, always including the far edge.
    xs = _positions(w - cw, max(align, cw // 8), align)
    ys = _positions(h - ch, max(align, ch // 8), align)
    cands = []
    for y in ys:
        for x in xs:
            x0, y0 = x // factor, y // factor
            x1, y1 = min((x + cw) // factor, dm.shape[1]), min((y + ch) // factor, dm.shape[0])
            area = max(1, (x1 - x0) * (y1 - y0))
            s = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            cands.append(CropBox(x, y, cw, ch, round(float(s / area), 6)))
    # Highest score first; ties broken by position. Scores are rounded because OpenCV's SIMD paths can differ in
    # the last bits with the buffer's alignment, and the choice must not.
    cands.sort(key=lambda b: (-b.score, b.y, b.x))
    chosen: list[CropBox] = []
    for box in cands:
        if all(box.iou(c) <= max_overlap for c in chosen):
            chosen.append(box)
            if len(chosen) == count:
                break
    return chosen


def _positions(span: int, stride: int, align: int) -> list[int]:
    pos = {min(span, (p // align) * align) for p in range(0, span + 1, stride)}
    pos.add(span)  # the far edge is always a candidate (it may not be aligned when the image is not)
    return sorted(pos)
