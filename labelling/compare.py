"""The comparison an annotator sees: the regions where two candidates differ most, LR beside them, all at 1:1.

Label Studio 1.23 cannot keep the zoom of several ``<Image>`` tags in step (``sync`` exists for audio, video and
paragraphs only; issue #1681) and scales an ``<Image>`` to its column, so a fair comparison is rendered here, on the
server, and shown as plain HTML images that the browser draws at their natural size:

- *Regions.* ``diff_regions`` picks ``n`` non-overlapping ``side`` x ``side`` windows (HR pixels) where the two
  candidates differ most: the largest sums of the per-pixel absolute RGB difference |A - B| (summed over the three
  channels). That is where the annotator's judgement is needed; where the two agree there is nothing to compare.
  Windows lie on the LR pixel grid (corners at multiples of the integer scale s), so the LR region is exactly the
  ``side / s`` LR pixels under them. The search runs on the s x s block means of |A - B| (one value per LR pixel:
  the block mean of the *difference*, so fine texture that differs is not averaged away as it would be in a
  difference of downscaled images) with window sums from an integral image, O(pixels) per pair. Greedy: the best
  window, then the best one not overlapping any chosen, and so on (of windows holding the same difference, the one
  with it in its middle half wins). So a pair gets up to ``n`` regions: fewer when the image has no room for more
  beside the chosen ones (two 224-px regions always fit in 672 px). An image no larger than ``side`` is one region,
  shown whole. Cost at 3840 x 2160: ~0.3 s for the search, dominated overall by decoding the two PNGs (measured on 2
  shared cores under load: search 0.34 s, one 4K PNG read ~1 s), so a push renders real 4K pairs at seconds per pair,
  once per pair.
- *Panels.* Per region three PNGs, stored content-addressed under ``images/`` (``_store_png``): the LR region
  enlarged by nearest neighbour to the HR size (each LR pixel an s x s block, so the reference is the same region at
  the same on-screen scale as the candidates — never smoothed, never clipped), and the two candidate crops,
  untouched pixels.
- *Page.* ``Comparison.html`` lays the panels out as one row per region, ``LR | Left | Right``, each ``<img>`` with
  its pixel ``width``/``height`` so that the browser draws it 1:1 (CSS pixels; the labeling config's style forbids
  scaling). The config shows this HTML twice, the second time with Left and Right swapped in place (CSS ``order``),
  one at a time, toggled by the flip key (``interface``): the same spot then shows the other candidate, the flicker
  comparison SR experts use. Each panel carries its own caption, so the caption moves with
  the pixels and the answer is always about what is labelled "Left" / "Right".
- *Preload.* ``Comparison.preload`` is a hidden block with the next task's images; the browser fetches them while the
  annotator works on this one, so the next pair appears without an image wait.

Only URLs relative to the server (``/data/local-files/?d=<path under the served root>``) are emitted; every path
recorded in the tables is relative to the workspace (``images/..``), so a moved or copied workspace serves the same
tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import cv2
import numpy as np

REGIONS = 3  # regions per pair
SIDE = 224  # region side in HR pixels: 3 rows x (224 + caption) and 3 columns fit a 1440 x 900 laptop at 1:1


# shown in place of a panel that failed to load (the browser draws an <img>'s alt text there), in the annotator's
# words; short, because it is repeated in every panel of every task's data
NOT_LOADED = ": did not load, press Skip"


@dataclass(frozen=True, slots=True)
class Box:
    """A region in HR pixels."""

    x: int
    y: int
    w: int
    h: int


def integer_scale(hr_size: tuple[int, int], lr_shape: tuple[int, ...]) -> int | None:
    """s when HR = s x LR exactly on both axes (the workspace's rule), else None."""
    w, h = hr_size
    lh, lw = lr_shape[:2]
    if lw and lh and w % lw == 0 and h % lh == 0 and w // lw == h // lh:
        return w // lw
    return None


def diff_regions(a: np.ndarray, b: np.ndarray, side: int, n: int, grid: int = 1) -> list[Box]:
    """Up to ``n`` non-overlapping windows of ``side`` x ``side`` where RGB images ``a`` and ``b`` differ most (module
    doc), corners on multiples of ``grid``; best first. Images no larger than ``side`` give one whole-image box."""
    if a.shape != b.shape:
        raise ValueError(f"the two candidates differ in size ({a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]})")
    h, w = a.shape[:2]
    if side <= 0 or (w <= side and h <= side):
        return [Box(0, 0, w, h)]
    grid = max(1, grid)
    bw, bh = min(side, w), min(side, h)
    d = cv2.absdiff(a, b).astype(np.float32)  # |A - B| per channel (OpenCV: ~5x faster than numpy's int16 route)
    gh, gw = h // grid, w // grid
    if grid > 1:  # block means of |A - B| on the LR grid (INTER_AREA at an integer factor = exact block mean)
        d = cv2.resize(d[: gh * grid, : gw * grid], (gw, gh), interpolation=cv2.INTER_AREA)
    d = d.sum(axis=2) if d.ndim == 3 else d
    kw, kh = max(1, bw // grid), max(1, bh // grid)
    ii = cv2.integral(d, sdepth=cv2.CV_64F)

    def window_sums(ky: int, kx: int) -> np.ndarray:  # [y, x]: the ky x kx window with top-left corner (x, y)
        return ii[ky:, kx:] - ii[:-ky, kx:] - ii[ky:, :-kx] + ii[:-ky, :-kx]

    sums = window_sums(kh, kw)
    # tie-break: of windows holding the same difference, prefer the one with it in its middle half
    cy, cx = kh // 4, kw // 4
    sums += 1e-6 * window_sums(max(1, kh // 2), max(1, kw // 2))[cy : cy + sums.shape[0], cx : cx + sums.shape[1]]
    out: list[Box] = []
    for _ in range(n):
        k = int(np.argmax(sums))
        y, x = divmod(k, sums.shape[1])
        if not np.isfinite(sums[y, x]):
            break
        out.append(Box(x * grid, y * grid, bw, bh))
        sums[max(0, y - kh + 1) : y + kh, max(0, x - kw + 1) : x + kw] = -np.inf  # no overlap with this one
    return out


def lr_region(lr: np.ndarray, box: Box, hr_size: tuple[int, int]) -> np.ndarray:
    """The LR pixels under HR ``box``, enlarged by nearest neighbour to the box's size: HR pixel (x, y) shows LR pixel
    (floor(x lw / W), floor(y lh / H)) — for an integer scale s, each LR pixel an exact s x s block."""
    w, h = hr_size
    lh, lw = lr.shape[:2]
    ys = (np.arange(box.y, box.y + box.h) * lh) // h
    xs = (np.arange(box.x, box.x + box.w) * lw) // w
    return np.ascontiguousarray(lr[ys][:, xs])


@dataclass(slots=True)
class Panels:
    """One region: its box and its three images (paths relative to the workspace)."""

    box: Box
    lr: str
    left: str
    right: str


@dataclass(slots=True)
class Comparison:
    """A pair's regions, in screen order (``left`` is the candidate shown on the left), and the LR -> HR scale."""

    panels: list[Panels]
    scale: int | None  # integer LR -> HR scale, None when HR is not an exact multiple of LR

    def html(self, url: Callable[[str], str]) -> str:
        """The comparison page (module doc): one ``sr4k-row`` per region, three ``figure``s (``sr4k-lr``,
        ``sr4k-left``, ``sr4k-right``) each with a caption and an ``<img>`` of explicit pixel size."""
        ref = f"LR input ×{self.scale} (nearest)" if self.scale else "LR input (nearest)"
        rows = []
        for p in self.panels:
            figs = "".join(
                f'<figure class="sr4k-{cls}"><figcaption>{escape(cap)}</figcaption><img src="{escape(url(rel))}" '
                f'width="{p.box.w}" height="{p.box.h}" alt="{escape(cap + NOT_LOADED)}"></figure>'
                for cls, cap, rel in (("lr", ref, p.lr), ("left", "Left", p.left), ("right", "Right", p.right))
            )
            rows.append(f'<div class="sr4k-row">{figs}</div>')
        return f'<div class="sr4k-cmp">{"".join(rows)}</div>'

    def preload(self, url: Callable[[str], str]) -> str:
        """A hidden block with this comparison's images: the browser fetches (and caches) them, shows nothing."""
        imgs = "".join(
            f'<img src="{escape(url(rel))}" alt="">' for p in self.panels for rel in (p.lr, p.left, p.right)
        )
        return f'<div class="sr4k-preload" hidden style="display:none">{imgs}</div>'


def render(lr: np.ndarray, left: np.ndarray, right: np.ndarray, store: Callable[[np.ndarray], str],
           side: int = SIDE, n: int = REGIONS) -> Comparison:  # fmt: skip
    """The regions where ``left`` and ``right`` (RGB, same size) differ most, each as three stored PNGs (module
    doc). ``store(rgb) -> path`` stores one image and returns its workspace-relative path."""
    hr_size = (left.shape[1], left.shape[0])
    scale = integer_scale(hr_size, lr.shape)
    panels = []
    for box in diff_regions(left, right, side, n, grid=scale or 1):
        crop = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
        panels.append(Panels(box, store(lr_region(lr, box, hr_size)), store(np.ascontiguousarray(left[crop])),
                             store(np.ascontiguousarray(right[crop]))))  # fmt: skip
    return Comparison(panels, scale)
