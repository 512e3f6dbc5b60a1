"""Exact and near-duplicate removal over the images table of a whole run.

- **Exact**: same ``pixel_sha256`` (the hash of the decoded, normalised pixels and their shape), so a PNG and a BMP of
  the same picture, or two copies under different names, collapse even though their file bytes differ.
- **Near**: 64-bit DCT perceptual hashes (``imagehash.phash``, computed on a 32x32 downscale, hence invariant to
  resolution and mild recompression) within ``max_distance`` bits of Hamming distance. This catches the same
  picture at several sizes, recompressed or lightly edited.

The representative of an exact group is its smallest URI. The representative of a near group is the "best" member:
largest pixel count, then fewest compression artefacts (highest JPEG quality; non-JPEG counts as 100), then highest
sharpness (which JPEG ringing inflates, so it only breaks ties), then the smallest URI — a total order, so the
choice is deterministic. Others get a reject ``exact_duplicate`` / ``near_duplicate`` / ``crop_duplicate`` with
``duplicate_of`` = the final representative's key (an exact copy of a rejected member points past it).

- **Crop** (after the hashes, when grey views are given): a portrait re-crop, a rescaled crop or a letterboxed
  re-layout of a picture has a pHash far from the original's (8-18 bits measured), so every pair of remaining groups
  is compared by ``crop_match``: multi-scale normalised cross-correlation of one picture's small grey view (whole, or
  its centre half) over the other's. Pairs at ``min_ncc`` or above join one group; a member that the hashes alone
  would not have joined to its representative is rejected ``crop_duplicate``.
  Measured (58 views: 5 pictures x 8 forms + 18 other photos/wallpapers from /usr/share/backgrounds/mate and
  scikit-image; 1,653 pairs): at 0.96, 129 of 135 same-picture pairs matched (the misses: a square picture cut to
  80 % and pillarboxed onto a 21:9 canvas, whose overlap with the original is under ``min_frac``); 3 of 1,513
  different-picture pairs matched, all three Ubuntu MATE's one design in other colours (0.99); the highest pair of
  different photos scored 0.92. Cost: 50-140 ms a pair on the shared 2-core machine under load, so only the pairs
  that ``crop_candidates`` keeps are compared: the same search on 32-px views with a coarser scale grid, batched as
  matrix products (~1 ms a pair or less), keeping pairs that score >= ``GATE_MIN`` (0.80) there. On the 54-view set
  below every pair that crop_match joins scored >= 0.91 at that level and 267 of 1,431 pairs were kept; still
  O(n^2), with a far smaller constant (``benchmarks/dedup_scaling.py`` measures 1,000 sources).
  On the kept pairs, 86 % of crop_match's time was its coarse pass (30 widths x 2 parts x 2 directions of
  ``matchTemplate`` on 64-px views; measured on photo-like synthetic views). ``coarse_screen`` computes that pass for
  all kept pairs of one container as a few matrix products, and crop_match then scores exactly (matchTemplate) only
  the widths whose batched score is within ``SCREEN_EPS`` of the best; the answer is the same as without it (the
  batched and exact scores differ by < 1e-5, tests check equality pair by pair and against ``brute_force``).
  Both batched steps multiply with NumPy's BLAS limited to one thread (threadpoolctl): 1.7x (prefilter) to 2.4x
  less CPU than ``cv2.gemm``, and no spinning BLAS threads on a machine whose cores are already busy.

Near-duplicate search is all-pairs within buckets: the 64-bit hash is split into ``max_distance + 1`` bands, and by
the pigeonhole principle two hashes within ``max_distance`` bits agree exactly on at least one band, so only pairs
sharing a band value are compared (multi-index hashing, Norouzi et al. 2012). Groups are the connected components
of the "within distance" graph (union-find), so a chain a~b~c collapses into one group — conservative for a
training set, where leaking near-copies across the train/benchmark split is the worse error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

DEDUP_VERSION = "dedup/2"

# Prefilter of crop matching (crop_candidates): 32-px views, part widths 1, 0.85, ..., 0.85^8 of the container's, and
# the score a pair must reach there to be compared by crop_match. Measured on 54 views (5 pictures x 8 forms + 14
# other photos, 1,431 pairs): the 135 pairs crop_match joins at 0.96 scored >= 0.91 here; 267 pairs reached 0.80.
GATE_GRID = tuple(0.85**k for k in range(9))
GATE_MIN = 0.80
COARSE_MIN = 0.6  # crop_match refines a part only when its coarse (64-px) score reaches this
# Allowance between coarse_screen's batched float32 product and _ncc_max (matchTemplate) on the same template and
# view: unit vectors of <= 64 x 64 values, so the two differ by rounding only (measured < 1e-5, see tests); 100x that.
SCREEN_EPS = 1e-3
WHICH = ("whole", "centre")


@dataclass(slots=True)
class DedupItem:
    key: str
    uri: str
    pixel_sha256: str
    phash: str  # 16 hex digits
    pixels: int
    sharpness: float
    jpeg_quality: float | None


@dataclass(slots=True)
class Duplicate:
    key: str
    uri: str
    reason: str  # exact_duplicate | near_duplicate | crop_duplicate
    duplicate_of: str
    distance: int  # Hamming distance of the perceptual hashes (0 for exact)
    ncc: float | None = None  # crop_duplicate: crop_match correlation with the representative


def _rank(it: DedupItem) -> tuple:
    q = 100.0 if it.jpeg_quality is None else it.jpeg_quality
    return (-it.pixels, -q, -it.sharpness, it.uri)


def find_duplicates(
    items: list[DedupItem],
    max_distance: int = 6,
    views: Mapping[str, MatchView] | None = None,
    min_ncc: float = 0.96,
    brute_force: bool = False,
) -> list[Duplicate]:
    """Every item that is not its group's representative, with the representative's key. ``views``: key -> grey
    view for crop matching (items without one are matched by hash only); ``max_distance`` -1 turns pHash off.
    ``brute_force`` compares every pair with ``crop_match`` (no prefilter, no screen): the reference that tests and
    ``benchmarks/dedup_scaling.py`` hold the fast path to."""
    dups: list[Duplicate] = []
    # Exact duplicates first: keep the best of each pixel hash.
    by_pixels: dict[str, list[DedupItem]] = defaultdict(list)
    for it in items:
        by_pixels[it.pixel_sha256].append(it)
    unique = []
    for group in by_pixels.values():
        # Same pixels: only the URI tells copies apart (float scores of equal pixels may differ in the last bits,
        # since OpenCV's SIMD paths depend on buffer alignment, and must not decide).
        group.sort(key=lambda it: it.uri)
        unique.append(group[0])
        dups += [Duplicate(d.key, d.uri, "exact_duplicate", group[0].key, 0) for d in group[1:]]
    unique.sort(key=_rank)
    hashes = [int(it.phash, 16) for it in unique]
    parent = list(range(len(unique)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:  # the lower index is the better-ranked item (unique is sorted by rank)
            parent[max(ra, rb)] = min(ra, rb)

    for a, b in _candidate_pairs(hashes, max_distance) if max_distance >= 0 else ():
        if (hashes[a] ^ hashes[b]).bit_count() <= max_distance:
            union(a, b)
    views = views or {}
    with_view = [i for i, it in enumerate(unique) if views.get(it.key) is not None]
    listed = [views[unique[i].key] for i in with_view]
    if brute_force:  # the reference: every pair, crop_match as written, no prefilter or screen
        pairs, screen = [(a, b) for a in range(len(listed)) for b in range(a + 1, len(listed))], None
    else:
        pairs = crop_candidates(listed)
        screen = coarse_screen(listed, pairs)
    for a, b in pairs:
        coarse = None if screen is None else np.stack((screen[a, b], screen[b, a]))
        va, vb = listed[a], listed[b]
        a, b = with_view[a], with_view[b]
        if find(a) != find(b) and crop_match(va, vb, stop=min_ncc, coarse=coarse)[0] >= min_ncc:
            union(a, b)
    for i, it in enumerate(unique):
        root = find(i)
        if root != i:
            dist = (hashes[i] ^ hashes[root]).bit_count()
            if 0 <= dist <= max_distance:
                dups.append(Duplicate(it.key, it.uri, "near_duplicate", unique[root].key, dist))
            else:  # joined by a crop match, possibly through other members: report the match with the representative
                va, vr = views.get(it.key), views.get(unique[root].key)
                ncc = round(crop_match(va, vr)[0], 4) if va is not None and vr is not None else None
                dups.append(Duplicate(it.key, it.uri, "crop_duplicate", unique[root].key, dist, ncc))
    # An exact copy of a picture that is itself a near/crop duplicate points to the kept one, not to a rejected one.
    rep_of_pixels = {u.pixel_sha256: unique[find(i)].key for i, u in enumerate(unique)}
    pixels_of_uri = {it.uri: it.pixel_sha256 for it in items}
    for d in dups:
        if d.reason == "exact_duplicate":
            d.duplicate_of = rep_of_pixels[pixels_of_uri[d.uri]]
    return sorted(dups, key=lambda d: d.uri)


def _candidate_pairs(hashes: list[int], max_distance: int) -> set[tuple[int, int]]:
    bands = max_distance + 1
    width = 64 // bands
    pairs: set[tuple[int, int]] = set()
    for b in range(bands):
        shift = b * width
        bits = width if b < bands - 1 else 64 - shift
        mask = (1 << bits) - 1
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, h in enumerate(hashes):
            buckets[(h >> shift) & mask].append(i)
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
    return pairs


# --- crop-aware matching -------------------------------------------------------------------------------------------


def small_gray(rgb: np.ndarray, side: int = 256) -> np.ndarray:
    """A grey (BT.601 luma) view, area-downscaled so that its longer side is at most ``side``."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return _fit(gray, side, upscale=False)


def _fit(img: np.ndarray, side: int, upscale: bool = True) -> np.ndarray:
    h, w = img.shape[:2]
    f = side / max(h, w)
    if f >= 1 and not upscale:
        return img.astype(np.float32)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)


class MatchView:
    """One picture prepared for ``crop_match``: its grey view at the coarse and fine sizes, whole and by its centre
    half, with the resized templates cached (a template's size depends only on the container's width, which is the
    coarse/fine side for landscape containers, so each size is made once per picture, not once per pair)."""

    TINY, COARSE, FINE = 32, 64, 128

    def __init__(self, gray: np.ndarray):
        h, w = gray.shape
        centre = gray[h // 4 : h - h // 4, w // 4 : w - w // 4]
        self.big = {"t": _fit(gray, self.TINY), "c": _fit(gray, self.COARSE), "f": _fit(gray, self.FINE)}
        self.parts = {
            ("c", "whole"): _fit(gray, self.COARSE),
            ("f", "whole"): _fit(gray, self.FINE),
            ("c", "centre"): _fit(centre, self.COARSE),
            ("f", "centre"): _fit(centre, self.FINE),
            ("t", "whole"): _fit(gray, self.TINY),
            ("t", "centre"): _fit(centre, self.TINY),
        }
        self._cache: dict[tuple, np.ndarray | None] = {}

    def template(self, level: str, which: str, tw: int) -> np.ndarray | None:
        key = (level, which, tw)
        if key not in self._cache:
            part = self.parts[(level, which)]
            th = round(tw * part.shape[0] / part.shape[1])
            tpl = cv2.resize(part, (tw, th), interpolation=cv2.INTER_AREA) if th >= 8 else None
            self._cache[key] = tpl if tpl is not None and float(tpl.std()) >= 2.0 else None  # flat: matches anything
        return self._cache[key]

    def unit_template(self, level: str, which: str, tw: int) -> np.ndarray | None:
        """``template`` made zero-mean and unit-norm (cached): what ``coarse_screen`` multiplies windows by."""
        key = ("unit", level, which, tw)
        if key not in self._cache:
            tpl = self.template(level, which, tw)
            self._cache[key] = None if tpl is None else _unit(tpl.ravel()).reshape(tpl.shape)
        return self._cache[key]


def _best_over(
    big: np.ndarray, part: MatchView, level: str, which: str, fracs, stop: float, approx=None, floor: float = -1.0
) -> tuple[float, float]:
    """The first part width in ``fracs`` with the highest ``_ncc_max`` score (stopping at ``stop``): (score, frac).

    ``approx`` (from ``coarse_screen``: the same scores by a batched product, within ``SCREEN_EPS / 2`` of
    ``_ncc_max``'s) narrows the search without changing its answer: a width whose estimate is more than SCREEN_EPS
    below the best estimate cannot hold the exact maximum, so only the widths within SCREEN_EPS of it are scored
    exactly (one left: it is the answer, and its estimate stands in for its score). When even the best estimate is
    SCREEN_EPS below ``floor``, the exact best is below ``floor`` too, and that estimate is returned for the caller's
    ``< floor`` test."""
    if approx is not None:
        top = float(np.max(approx)) if len(approx) else -np.inf
        near = [f for f, s in zip(fracs, approx, strict=True) if s >= top - SCREEN_EPS]
        if top < floor - SCREEN_EPS or (len(near) == 1 and top >= floor + SCREEN_EPS):
            return (top, near[0]) if len(near) == 1 and np.isfinite(top) else (min(top, -1.0), 0.0)
        fracs = near
    bh, bw = big.shape
    best = (-1.0, 0.0)
    for f in fracs:
        tw = round(f * bw)
        tpl = part.template(level, which, tw) if tw >= 8 else None
        if tpl is None or tpl.shape[0] > bh or tw > bw:
            continue
        score = _ncc_max(big, tpl)
        if score > best[0]:
            best = (score, f)
            if score >= stop:
                break
    return best


def _ncc_max(big: np.ndarray, tpl: np.ndarray) -> float:
    """max over positions of OpenCV's TM_CCOEFF_NORMED. For a template nearly as large as the image (few positions)
    OpenCV takes its DFT path, ~3 ms for 60x60 in 64x64; the same sum over <= 400 windows directly is cheaper:
    ncc = sum((w - mean w) * (t - mean t)) / sqrt(sum((w - mean w)^2) * sum((t - mean t)^2))."""
    ny, nx = big.shape[0] - tpl.shape[0] + 1, big.shape[1] - tpl.shape[1] + 1
    if ny * nx > 400:
        return float(cv2.matchTemplate(big, tpl, cv2.TM_CCOEFF_NORMED).max())
    t = tpl - tpl.mean()
    win = np.lib.stride_tricks.sliding_window_view(big, tpl.shape)  # (ny, nx, th, tw), a view
    n = tpl.size
    s1 = win.sum(axis=(2, 3))
    s2 = np.einsum("ijkl,ijkl->ij", win, win)
    cross = np.einsum("ijkl,kl->ij", win, t)  # sum(w * t'), equal to sum((w - mean w) * t') since sum(t') = 0
    var = np.maximum(s2 - s1 * s1 / n, 0.0) * float((t * t).sum())
    ncc = np.where(var > 1e-6, cross / np.sqrt(np.maximum(var, 1e-12)), 0.0)
    return float(ncc.max())


_GRID = [0.96**k for k in range(64)]


def crop_match(
    a: MatchView, b: MatchView, min_frac: float = 0.3, stop: float = 1.0, coarse: np.ndarray | None = None
) -> tuple[float, float]:
    """How well one picture is a crop, rescale or re-layout of the other: (best correlation, part width fraction).

    Each picture is tried as the part inside the other, whole and by its centre half (the centre is what a
    letterboxed or re-cropped layout keeps): the part is resized so that its width is a fraction f of the container's
    width, for f on a geometric grid from 1 down to ``min_frac`` (4 % steps), and slid over the container with
    OpenCV's ``matchTemplate`` (``TM_CCOEFF_NORMED``: zero-mean normalised cross-correlation, invariant to gain and
    offset of the grey levels, so colour-mode conversions and tone shifts barely move it). Coarse pass on 64-px
    views; the best scale (if its score passes 0.6) is refined on 128-px views in 1 % steps. Stops once a refined
    score reaches ``stop``. Orientation is not searched: decoding has already applied EXIF orientation.

    ``coarse``: the coarse pass's scores from ``coarse_screen`` (shape (2, 2, len(grid)): a in b / b in a, whole /
    centre, each width), which skip most ``matchTemplate`` calls of that pass and leave the result unchanged.
    """
    grid = [f for f in _GRID if f >= min_frac]
    best = (-1.0, 0.0)
    for d, (big, part) in enumerate(((a, b), (b, a))):
        for w, which in enumerate(WHICH):
            approx = None if coarse is None else coarse[d, w]
            score, f = _best_over(big.big["c"], part, "c", which, grid, 2.0, approx, COARSE_MIN)
            if score < COARSE_MIN:
                continue
            around = [f * (1 + 0.01 * k) for k in range(-3, 4) if f * (1 + 0.01 * k) <= 1.0]
            best = max(best, _best_over(big.big["f"], part, "f", which, around, stop))
            if best[0] >= stop:
                return best
    return best


@threadpool_limits.wrap(limits=1, user_api="blas")
def crop_candidates(views: list[MatchView], min_frac: float = 0.3, gate: float = GATE_MIN) -> list[tuple[int, int]]:
    """Index pairs (a < b) worth a ``crop_match``: those whose best zero-mean normalised correlation on the 32-px
    views, over the same search as crop_match's coarse pass but on a coarser scale grid (``GATE_GRID``), reaches
    ``gate`` in either direction. Vectorised over all parts at once: for one container and one template shape, the
    normalised windows (positions x pixels) times the normalised templates (pixels x parts) is a matrix of
    TM_CCOEFF_NORMED values, so the all-pairs cost is a few GEMMs per picture instead of thousands of
    ``matchTemplate`` calls. Still O(n^2) work, but ~0.1-0.3 ms a pair instead of 50-140 ms (benchmarks/
    dedup_scaling.py). Hand-written because no library at hand batches template matching over many templates.
    """
    n = len(views)
    grid = [f for f in GATE_GRID if f >= min_frac * GATE_GRID[1]]
    best = np.full((n, n), -1.0, np.float32)  # best[container, part]
    by_width: dict[int, list[int]] = defaultdict(list)
    for i, v in enumerate(views):
        by_width[v.big["t"].shape[1]].append(i)
    for cw, containers in by_width.items():
        # banks of templates by (shape, which): each part appears at most once in a bank
        banks: dict[tuple, tuple[list[int], list[np.ndarray]]] = defaultdict(lambda: ([], []))
        for f in grid:
            tw = round(f * cw)
            if tw < 8:
                continue
            for j, part in enumerate(views):
                for which in ("whole", "centre"):
                    tpl = part.template("t", which, tw)
                    if tpl is not None:
                        owners, tpls = banks[(tpl.shape, which)]
                        owners.append(j)
                        tpls.append(tpl.ravel())
        for ((th, tw), _), (owners, tpls) in banks.items():
            bank = _unit(np.stack(tpls)).T  # (th * tw, templates)
            owner = np.asarray(owners)
            for i in containers:
                big = views[i].big["t"]
                if th > big.shape[0] or tw > big.shape[1]:
                    continue
                win = np.lib.stride_tricks.sliding_window_view(big, (th, tw)).reshape(-1, th * tw)
                scores = (_unit(win) @ bank).max(axis=0)  # best position per template
                best[i, owner] = np.maximum(best[i, owner], scores)
    score = np.maximum(best, best.T)  # either picture may be the part
    a, b = np.nonzero(np.triu(score >= gate, k=1))
    return list(zip(a.tolist(), b.tolist(), strict=True))


@threadpool_limits.wrap(limits=1, user_api="blas")
def coarse_screen(
    views: list[MatchView], pairs: list[tuple[int, int]], min_frac: float = 0.3
) -> dict[tuple[int, int], np.ndarray]:
    """crop_match's coarse pass for the given pairs in both directions, batched: ``{(container, part): scores}``
    with scores of shape (2, len(grid)) (whole / centre part, each width of crop_match's grid; -inf where
    crop_match tries no template). Same windows, templates and TM_CCOEFF_NORMED as ``_ncc_max``, computed per
    container as one product of its normalised windows (positions x pixels) with the normalised templates of all
    its candidate parts of one shape (pixels x templates), as ``crop_candidates`` does on the 32-px views. The scores
    differ from matchTemplate's by float rounding only, which ``_best_over`` allows for (``SCREEN_EPS``), so
    ``crop_match(..., coarse=...)`` gives the same answer as without it at a fraction of the cost. Memory: 240 bytes
    a direction of a pair (float32, as the product gives them), ~40 MB for the 83,000 kept pairs of 1,000 sources."""
    grid = [f for f in _GRID if f >= min_frac]
    partners: dict[int, set[int]] = defaultdict(set)
    for a, b in pairs:
        partners[a].add(b)
        partners[b].add(a)
    out: dict[tuple[int, int], np.ndarray] = {}
    for c, parts in partners.items():
        big = views[c].big["c"]
        bh, bw = big.shape
        widths = sorted({round(f * bw) for f in grid if round(f * bw) >= 8})
        banks: dict[tuple[int, int], tuple[list[tuple[int, int, int]], list[np.ndarray]]] = defaultdict(
            lambda: ([], [])
        )
        for p in parts:
            for w, which in enumerate(WHICH):
                for tw in widths:
                    tpl = views[p].unit_template("c", which, tw)
                    if tpl is not None and tpl.shape[0] <= bh:
                        keys, tpls = banks[tpl.shape]
                        keys.append((p, w, tw))
                        tpls.append(tpl.ravel())
        score: dict[tuple[int, int, int], float] = {}
        s1, s2 = cv2.integral2(big, sdepth=cv2.CV_64F)
        for (th, tw), (keys, tpls) in banks.items():
            # TM_CCOEFF_NORMED = sum(w * t') / (|t'| * sqrt(sum(w^2) - sum(w)^2 / n)) with t' the zero-mean template
            # (sum(t') = 0, so the window's mean drops out of the numerator): raw windows times unit templates,
            # divided by each window's norm from the integral images.
            n = th * tw
            sw = s1[th:, tw:] - s1[:-th, tw:] - s1[th:, :-tw] + s1[:-th, :-tw]
            sww = s2[th:, tw:] - s2[:-th, tw:] - s2[th:, :-tw] + s2[:-th, :-tw]
            norm = np.sqrt(np.maximum(sww - sw * sw / n, 0.0)).astype(np.float32).reshape(-1, 1)
            win = np.lib.stride_tricks.sliding_window_view(big, (th, tw)).reshape(-1, n)
            num = win @ np.stack(tpls).T
            best = np.divide(num, norm, out=np.zeros_like(num), where=norm > 1e-3).max(axis=0)
            score.update(zip(keys, best.tolist(), strict=True))
        for p in parts:
            out[c, p] = np.array(
                [[score.get((p, w, round(f * bw)), -np.inf) for f in grid] for w in range(len(WHICH))], np.float32
            )
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows (or a vector) made zero-mean and unit-norm in float32; flat ones become zero (correlate as 0)."""
    x = np.asarray(x, np.float32)
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-6)
