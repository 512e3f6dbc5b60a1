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

*Recorded once, where the pair is built* (``record_views``, called by ``sr4k pairs build``): rendering costs tens of
milliseconds per pair even for tiny images (two PNG reads, nine PNG encodes, hashes and writes) — 366 s of a 381 s
push of 18,000 pairs when it was done at push time. So the pairs flow renders each new pair's comparison once, in a
process pool across the cores, and writes what a task needs as a row of ``tables/pair_views`` (``VIEWS``: the stored
LR copy, the scale, and per region its box and its three workspace-relative PNG paths, in the pair's a/b terms, not
screen terms). The push then only assembles task JSON from these rows (``from_view``). The output is the same bytes
as rendering at push time: the same ``render`` and ``store_png``, and ``diff_regions`` is symmetric in the two
candidates (|A - B|), so rendering a/b and swapping to Left/Right gives the boxes and files that rendering Left/Right
gives. A row is used only for the region side and count it was rendered with.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.store.workspace import Workspace, atomic_open, write_bytes_atomic
from schemas.pairs import VIEWS, VIEWS_SCHEMA_VERSION

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


def render(
    lr: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    store: Callable[[np.ndarray], str],
    side: int = SIDE,
    n: int = REGIONS,
) -> Comparison:
    """The regions where ``left`` and ``right`` (RGB, same size) differ most, each as three stored PNGs (module
    doc). ``store(rgb) -> path`` stores one image and returns its workspace-relative path."""
    hr_size = (left.shape[1], left.shape[0])
    scale = integer_scale(hr_size, lr.shape)
    panels = []
    for box in diff_regions(left, right, side, n, grid=scale or 1):
        crop = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
        panels.append(
            Panels(
                box,
                store(lr_region(lr, box, hr_size)),
                store(np.ascontiguousarray(left[crop])),
                store(np.ascontiguousarray(right[crop])),
            )
        )
    return Comparison(panels, scale)


# ------------------------------------------------------------------------------------------------ recorded views


def store_png(root: Path, rgb: np.ndarray) -> str:
    """Store an RGB image content-addressed under ``<root>/images/``; returns its workspace-relative path. PNG level
    1: lossless (the comparison must show the candidates' own pixels) and ~5x faster to encode than the default."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    data = png.tobytes()
    sha = hashlib.sha256(data).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"
    if not (root / rel).exists():
        write_bytes_atomic(root / rel, data)
    return rel


def read_rgb(root: Path, rel: str) -> np.ndarray:
    """A stored candidate image as RGB; a clear error naming the file when it is missing."""
    bgr = cv2.imread(str(root / rel), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"candidate image {root / rel} is missing or unreadable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def from_view(row: dict, left: str) -> Comparison:
    """The comparison of a recorded ``VIEWS`` row in screen order (``left`` = "a" | "b": the candidate on the left)."""
    flip = left == "b"
    panels = [
        Panels(Box(x, y, w, h), lr, b if flip else a, a if flip else b)
        for x, y, w, h, lr, a, b in json.loads(row["panels"])
    ]
    return Comparison(panels, row["scale"])


Group = tuple[str, list[tuple[str, str, str]]]  # (stored LR copy, [(pair_id, path_a, path_b), ...])


def _render_lr(root: str, group: Group, side: int, n: int) -> list[dict]:
    """``VIEWS`` rows of the pairs of one LR image: the LR (its stored copy) and each candidate read once."""
    base = Path(root)
    lr_rel, pairs = group
    lr = read_rgb(base, lr_rel)
    images: dict[str, np.ndarray] = {}
    rows = []
    for pid, pa_, pb in pairs:
        for rel in (pa_, pb):
            if rel not in images:
                images[rel] = read_rgb(base, rel)
        c = render(lr, images[pa_], images[pb], lambda rgb: store_png(base, rgb), side, n)
        panels = [[p.box.x, p.box.y, p.box.w, p.box.h, p.lr, p.left, p.right] for p in c.panels]
        rows.append(
            {
                "pair_id": pid,
                "side": side,
                "regions": n,
                "lr": lr_rel,
                "scale": c.scale,
                "panels": json.dumps(panels, separators=(",", ":")),
                "schema_version": VIEWS_SCHEMA_VERSION,
            }
        )
    return rows


def _store_lrs(ws: Workspace, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(lr_set, lr_key) -> the workspace path of the LR's content-addressed PNG copy under ``images/`` (the copy the
    task shows; lossless, so the workers read back the same pixels). Done here, with threads (OpenCV releases the
    GIL), so that the worker processes never import the LR readers (benchmark index checks, shard readers: seconds
    of imports per process)."""
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.pairs.candidates import lr_items

    loaders = {s: {it.key: it.load for it in lr_items(ws, s)} for s in sorted({s for s, _ in keys})}

    def one(key: tuple[str, str]) -> str:
        lr_set, lr_key = key
        if lr_key not in loaders[lr_set]:
            raise ValueError(f"LR {lr_key!r} is not in LR set {lr_set!r}: cannot render its pairs' comparisons")
        return store_png(ws.root, loaders[lr_set][lr_key]())

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return dict(zip(keys, pool.map(one, keys), strict=True))


def _render_chunk(root: str, groups: list[Group], side: int, n: int) -> list[dict]:
    return [row for g in groups for row in _render_lr(root, g, side, n)]


def render_views(
    ws: Workspace, pairs: Iterable[dict], side: int = SIDE, n: int = REGIONS, workers: int | None = None
) -> list[dict]:
    """``VIEWS`` rows for ``pairs`` (dicts with ``pair_id``, ``lr_set``, ``lr_key``, ``path_a``, ``path_b``), sorted
    by pair_id. Pairs are grouped by LR (each LR and candidate read once per group), the LRs stored (``_store_lrs``)
    and the groups rendered in a process pool of ``workers`` (default: the CPU count; 1 = in this process).
    Deterministic: the files and rows do not depend on the worker count (content-addressed PNGs, rows sorted)."""
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for p in pairs:
        if p.get("lr_set") is None:
            raise ValueError(f"LR {p['lr_key']!r} of pair {p['pair_id']} has no row in the candidates table")
        groups.setdefault((p["lr_set"], p["lr_key"]), []).append((p["pair_id"], p["path_a"], p["path_b"]))
    keys = sorted(groups)
    lr_copies = _store_lrs(ws, keys)
    items = [(lr_copies[k], groups[k]) for k in keys]
    workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
    root = str(ws.root)
    if workers == 1:
        rows = _render_chunk(root, items, side, n)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # ~4 chunks per worker: balanced load, few round trips. forkserver, not fork: the caller may run threads
        # (Prefect), which fork would copy mid-lock; and not spawn: each spawned worker re-imports the caller's main
        # module (the CLI: Prefect, typer; ~5 s per worker under load), the fork server does so once
        size = max(1, -(-len(items) // (4 * workers)))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["labelling.compare"])
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            rows = [
                r
                for part in pool.map(
                    _render_chunk, [root] * len(chunks), chunks, [side] * len(chunks), [n] * len(chunks)
                )
                for r in part
            ]
    return sorted(rows, key=lambda r: r["pair_id"])


def views_dir(ws: Workspace) -> Path:
    return ws.table_dir("pair_views")


def read_views(ws: Workspace, ids: Iterable[str] | None = None) -> dict[str, dict]:
    """pair_id -> its recorded ``VIEWS`` row (the last part in name order wins), of ``ids`` if given."""
    import pyarrow.compute as pc

    parts = sorted(views_dir(ws).glob("part-*.parquet"))
    if not parts:
        return {}
    table = pa.concat_tables([pq.read_table(p, schema=VIEWS) for p in parts])
    if ids is not None:
        table = table.filter(pc.is_in(table["pair_id"], pa.array(sorted(set(ids)), pa.string())))
    return {r["pair_id"]: r for r in table.to_pylist()}


def record_views(
    ws: Workspace, name: str, side: int = SIDE, n: int = REGIONS, workers: int | None = None
) -> dict[str, float | int]:
    """Render the comparison of every pair of the workspace that has none recorded (in a ``pair_views`` part other
    than ``name``) and write them as ``tables/pair_views/part-<name>.parquet`` (atomic). Pairs built before views were
    recorded get theirs on the next ``sr4k pairs build``. Returns {"views", "render_seconds"}."""
    t0 = time.monotonic()
    pairs_dir = ws.table_dir("pairs")
    parts = sorted(pairs_dir.glob("part-*.parquet"))
    own = views_dir(ws) / f"part-{name}.parquet"
    have: set[str] = set()
    for p in sorted(views_dir(ws).glob("part-*.parquet")):
        if p != own:
            have |= set(pq.read_table(p, columns=["pair_id"])["pair_id"].to_pylist())
    want: dict[str, dict] = {}
    for p in parts:
        for r in pq.read_table(p, columns=["pair_id", "lr_key", "path_a", "path_b"]).to_pylist():
            if r["pair_id"] not in have:
                want.setdefault(r["pair_id"], r)
    cands = ws.table_dir("candidates")
    lr_sets: dict[str, str] = {}
    for p in sorted(cands.glob("part-*.parquet")):
        t = pq.read_table(p, columns=["lr_set", "lr_key"])
        for s, k in zip(t["lr_set"].to_pylist(), t["lr_key"].to_pylist(), strict=True):
            lr_sets.setdefault(k, s)
    for r in want.values():
        r["lr_set"] = lr_sets.get(r["lr_key"])
    rows = render_views(ws, want.values(), side, n, workers)
    with atomic_open(own) as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=VIEWS), f, compression="zstd")
    return {"views": len(rows), "render_seconds": round(time.monotonic() - t0, 2)}
