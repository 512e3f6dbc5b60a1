"""A/B comparison pairs for pairwise-preference annotation of SR candidates, and Bradley–Terry fits of the answers.

Several SR models ("candidates") are run on each LR image; an annotator is shown two candidate outputs of the same LR
side by side and says which is better. ``build_pairs`` decides which comparisons to ask for; ``fit_bradley_terry``
turns answers into per-model scores with uncertainty, which ``build_pairs(strategy="active")`` then uses to ask for
the comparisons that teach the most.

Cells and pruning
    A *cell* is one (LR image, unordered model pair) with an output of both models for that LR. Cells whose two
    outputs are near-identical are pruned (an annotator can only guess): ``perceptual_distance`` is the mean absolute
    difference of 64x64 area-downscaled luma thumbnails in [0, 1] (BT.601 luma of the 8-bit output, OpenCV
    ``INTER_AREA``, then /255 — ``thumbnail``). 0 means identical
    thumbnails, 1/255 one grey level on average. A cell is kept iff ``distance >= min_distance`` (default
    ``MIN_DISTANCE`` = 1e-3, a quarter grey level: this catches identical or re-encoded outputs — the same model
    under two names, a model that fell back to bicubic — but not two genuinely different SR outputs, which differ
    in texture that a 64x64 thumbnail mostly averages away; so the threshold must stay this low). Equal
    ``output_sha256`` means distance 0 without loading anything. Thumbnails come from a candidate's ``thumb`` (an
    array, or the path of an image to load) or else from ``output_path`` (resolved against ``root``); with
    ``min_distance=0`` nothing is loaded and ``distance`` is null unless thumbnails were given. ``exclude`` removes
    cells already built or annotated (by ``pair_id`` or ``(lr_key, model, model)``).

Strategies (``target`` = number of pairs; no pair of a candidate with itself, no cell twice, ever)
    ``all``: every remaining cell. "All means all": ``target`` must be 0 (= everything) or exactly the number of
    cells; a larger target is unreachable (ValueError), a smaller one is refused (ValueError pointing to
    ``balanced``) rather than silently truncated.

    ``balanced``: ``target`` cells such that every model pair is used about equally often and every LR about
    equally often. It is a degree-constrained subgraph problem on the bipartite graph (model pairs x LRs, an edge per
    cell), solved exactly as a maximum flow (Ford–Fulkerson; scipy's Dinic, ``scipy.sparse.csgraph.maximum_flow``):
    source -> model pair -> LR -> sink with unit capacity per cell. A node with degree band [lo, hi] gets an edge of
    capacity lo from the source (or to the sink) plus an edge of capacity hi - lo through a shared "extra" node whose
    own capacity is ``target - sum(lo)``; the source's (sink's) total capacity is then exactly ``target``, so a flow
    of value ``target`` saturates every lo edge: *max flow = target iff a selection with every degree in its band
    exists*, and the flow is one. Bands come from water-filling (``_quotas``): with a_i cells available to node i,
    the largest level v with sum(min(a_i, v)) <= target gives lo_i = min(a_i, v), and hi_i = lo_i + 1 for the nodes
    with a_i > v. So on a full grid (nothing pruned) model-pair counts are floor/ceil(target / #pairs) and LR counts
    floor/ceil(target / #LRs): they differ by at most one, always (a full grid is always feasible: such 0/1 matrices
    exist by Gale–Ryser, and the flow finds one). Under pruning, a node with fewer cells than the level gets all of
    them and the others stay within one of each other. Model-pair balance is never given up (with LRs unconstrained
    any pair quota <= its cells is feasible); if pruning makes both bands jointly infeasible, the LR band is widened
    by k = 1, 2, ... (binary search on the smallest k) and ``report["lr_band_widened_by"]`` says k. Node numbering and
    cell order are permuted with ``seed``, so the seed picks among the balanced selections.

    ``active``: with ``estimates[model] = (mean, std)`` on the Bradley–Terry logit scale (``fit_bradley_terry``), or
    reward-model scores with uncertainty on that scale. First *how many* comparisons each model pair gets, greedily
    one at a time, then *which LRs*, by the same flow as ``balanced`` with the pair counts fixed (so LRs stay spread
    within one of each other: the per-LR cap that keeps a batch diverse). A model pair's score, with d = mu_a - mu_b,
    v = var(theta_a - theta_b), p = sigmoid(d), Phi the normal CDF, ``acquisition=``:

    - ``"variance"``: p (1 - p) v: the Fisher information of one outcome times the variance of the difference, i.e.
      (monotonically) the expected information gain about d under a Laplace approximation, 1/2 log(1 + p(1-p) v):
      uncertainty sampling for Bradley–Terry (Houlsby et al. 2011, "BALD"; Chen et al. 2013, "Pairwise ranking
      aggregation in a crowdsourced setting", WSDM: pairs chosen by expected information gain on the BT posterior).
    - ``"order"`` (default): p (1 - p) v * 2 Phi(-|d| / sqrt(v)): the same information, weighted by how likely the
      pair's current order is wrong (1 when it is a coin toss, -> 0 once settled). Kendall tau counts wrongly ordered
      pairs, so this spends comparisons on neighbours in the current ranking that are not yet resolved, and none on
      pairs that are merely uncertain in scale but clear in order.
    - ``"kendall"``: the expected drop in the expected number of wrongly ordered pairs, sum_q Phi(-|d_q|/sqrt(v_q))
      - Phi(-|d_q|/sqrt(v_q')), after one more outcome of the pair (v' from the Kalman update below), the lookahead
      form of Chen et al.'s "expected reduction in ranking error".
    - ``"kg"``: KG(*) (Frazier & Powell 2010), the ``kendall`` lookahead over horizons of 1 to 64 comparisons,
      valued per comparison; see ``_kg_star``.
    - ``"ranking"``: KG(*) on the probability that the whole ranking is right, prod_q (1 - pi_q) with
      pi_q = Phi(-|d_q|/sqrt(v_q)) — to first order ``kg`` with each pair's drop weighted by 1 / (1 - pi_q), i.e.
      leaning on the pairs whose order is still open; derivation and approximations in ``_kg_star``.

    Several criteria judged in one comparison (consistency and naturalness): pass one estimate per criterion (a
    list); a pair's score is the sum, since one answer informs both. ``estimates_from_ranking`` reads them, with
    their covariance, from ``labelling/ranking.json`` (``sr4k aggregate``).

    ``benchmarks/pairs_active.py`` compares them with simulated annotators (numbers and both metrics in its doc):
    with a fixed budget, ``order`` reaches a mean Kendall tau of 0.9 over simulated worlds of 8 models with 0.50x
    the comparisons of random selection (200 fresh worlds; 95 % interval 0.38-0.64; 0.51x on another 100), and
    ``ranking`` 0.53x. Stopping each world when its own tau first holds >= 0.9 (which needs the true ranking), the
    ratios are 0.64-0.76 by mean: ``kendall`` 0.68x, ``variance`` 0.95x, ``kg`` 0.68x on 200 worlds.

    The variance of a difference needs the covariance: var(theta_a - theta_b) = C_aa + C_bb - 2 C_ab. A
    ``BTEstimates`` (what ``fit_bradley_terry`` returns) carries the bootstrap covariance; a plain dict gives
    std_a^2 + std_b^2, which overstates it for models compared mostly with each other (their difference is known well
    before their place on the scale is) — with that diagonal approximation active selection kept comparing the same
    pair and lost to random in the benchmark. Batch selection is greedy with a "believer" update: after choosing a
    pair, the covariance is updated as if its answer were in (one outcome's Fisher information p(1-p) on
    x = e_a - e_b: C -= p(1-p) C x x^T C / (1 + p(1-p) x^T C x), the Kalman/Laplace update), so later picks in the
    batch see the reduced uncertainty. Models missing from ``estimates`` get the mean of the known means and std
    ``max(1, largest known std)``; stds are capped at ``MAX_STD`` (inf = never compared). ``score`` is the greedy
    score at the pick. Without ``estimates`` (a cold start) ``active`` builds a balanced set (``score`` null,
    ``report["cold_start"]``).

Sides
    ``left`` says which candidate is shown on the left. The model pairs in seeded order, each one's chosen cells in
    seeded order, make one sequence along which "a"/"b" alternate from a seeded start: each model is on the left in
    half (+-1/2) of its pair's comparisons, so position bias cancels per pair, and left="a" is half (+-1/2) overall.

``pair_id`` is ``pr-`` + 20 hex digits of BLAKE2b over (lr_key, model_a, version_a, model_b, version_b), with
model_a < model_b: stable across runs and seeds, dot-free, and new when a model version changes. Same candidates,
same arguments, same seed -> the same pairs and sides (input order does not matter: LRs and models are sorted).

Bradley–Terry fits and the acquisition scores live in ``pipelines.pairs.bradley_terry`` (re-exported here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from scipy.special import expit

from pipelines.pairs.bradley_terry import (  # noqa: F401  (re-exported: the pair builder's public API)
    ACQUISITIONS,
    BT_ALPHA,
    KG_HORIZONS,
    Acquisition,
    BTEstimates,
    acquisition_scores,
    estimates_from_ranking,
    expected_misorder,
    fit_bradley_terry,
)
from schemas.pairs import PAIRS, PAIRS_SCHEMA_VERSION, PAIRS_VERSION, PairRec  # noqa: F401  (re-exported)
from schemas.records import to_table

THUMB_SIDE = 64
MIN_DISTANCE = 1e-3
MAX_STD = 10.0

Strategy = Literal["balanced", "all", "active"]


@dataclass(slots=True)
class Candidate:
    """One model's output for one LR image (a row of ``tables/candidates`` carries these fields and more)."""

    lr_key: str
    model: str
    model_version: str
    output_path: str
    thumb: np.ndarray | str | Path | None = None  # 64x64 luma thumbnail, or an image path to compute it from
    output_sha256: str | None = None


def pairs_table(pairs: list[PairRec]) -> pa.Table:
    return to_table(pairs, PAIRS)


def pair_id(lr_key: str, model_a: str, version_a: str, model_b: str, version_b: str) -> str:
    """Order-independent: the two candidates are sorted by model name first."""
    (ma, va), (mb, vb) = sorted([(model_a, version_a), (model_b, version_b)])
    h = hashlib.blake2b("\x1f".join((lr_key, ma, va, mb, vb)).encode(), digest_size=10)
    return f"pr-{h.hexdigest()}"


# ---------------------------------------------------------------------------------------------------- distances


def thumbnail(src: np.ndarray | str | Path, side: int = THUMB_SIDE) -> np.ndarray:
    """``side`` x ``side`` float32 luma in [0, 1], area-downscaled. An array already of that shape and float dtype is
    returned as is (a precomputed thumbnail); other arrays (HxW or HxWx3 RGB, uint8/uint16/float) are converted."""
    if isinstance(src, (str, Path)):
        img = cv2.imdecode(np.fromfile(str(src), np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot decode {src} as an image")
    else:
        img = np.asarray(src)
        if img.shape == (side, side) and img.dtype.kind == "f":
            return img.astype(np.float32, copy=False)
        if img.dtype.kind == "f":
            img = img.astype(np.float32)  # OpenCV's colour conversion and resize want float32
        if img.ndim == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    scale = float(np.iinfo(img.dtype).max) if img.dtype.kind == "u" else 1.0  # uint8 / 255, uint16 / 65535
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / np.float32(scale)


def perceptual_distance(a: np.ndarray | str | Path, b: np.ndarray | str | Path) -> float:
    """Mean absolute difference of the two 64x64 luma thumbnails, in [0, 1] (0 = identical; see the module doc)."""
    ta, tb = thumbnail(a), thumbnail(b)
    return float(np.mean(np.abs(ta - tb)))


# ---------------------------------------------------------------------------------------------------- the grid


def _get(row: Any, name: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(name, default)
    return getattr(row, name, default)


@dataclass(slots=True)
class _Grid:
    lrs: list[str]
    models: list[str]
    pairs: list[tuple[int, int]]  # model indices i < j
    cand: dict[tuple[int, int], Any]  # (lr index, model index) -> candidate row
    present: np.ndarray  # (L, P) bool: both outputs exist
    distance: np.ndarray  # (L, P) float, nan = unknown
    pruned: np.ndarray  # (L, P) bool
    excluded: np.ndarray  # (L, P) bool
    avail: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.avail = self.present & ~self.pruned & ~self.excluded

    def pair_name(self, p: int) -> str:
        i, j = self.pairs[p]
        return f"{self.models[i]} vs {self.models[j]}"


def _grid(candidates: Sequence[Any], min_distance: float, exclude: Iterable[Any], root: Path | None) -> _Grid:
    lrs = sorted({str(_get(c, "lr_key")) for c in candidates})
    models = sorted({str(_get(c, "model")) for c in candidates})
    li, mi = {k: n for n, k in enumerate(lrs)}, {m: n for n, m in enumerate(models)}
    cand: dict[tuple[int, int], Any] = {}
    for c in candidates:
        key = (li[str(_get(c, "lr_key"))], mi[str(_get(c, "model"))])
        if key in cand:
            raise ValueError(
                f"two candidates for LR {lrs[key[0]]!r} and model {models[key[1]]!r}; one per model "
                "and LR (a second version of a model must get its own model name)"
            )
        cand[key] = c
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    has = np.zeros((len(lrs), len(models)), bool)
    for lr, m in cand:
        has[lr, m] = True
    pi, pj = (np.array([p[k] for p in pairs], int) for k in (0, 1))
    present = has[:, pi] & has[:, pj] if pairs else np.zeros((len(lrs), 0), bool)
    distance = _distances(cand, pairs, present, min_distance > 0, root)
    pruned = present & (distance < min_distance)  # nan compares False: unknown distance is never pruned
    excluded = _excluded(exclude, lrs, models, pairs, cand) & present
    return _Grid(lrs, models, pairs, cand, present, distance, pruned, excluded)


def _distances(cand: dict, pairs: list, present: np.ndarray, load: bool, root: Path | None) -> np.ndarray:
    """(L, P) perceptual distances; 0 for equal output hashes (nothing loaded for those), nan where unknown."""
    dist = np.full(present.shape, np.nan)
    shas = {k: _get(c, "output_sha256") for k, c in cand.items()}
    if not load and not any(shas.values()) and all(_get(c, "thumb") is None for c in cand.values()):
        return dist
    todo = []
    for p, (i, j) in enumerate(pairs):
        for lr in np.flatnonzero(present[:, p]).tolist():
            sa = shas[(lr, i)]
            if sa and sa == shas[(lr, j)]:
                dist[lr, p] = 0.0
            else:
                todo.append((lr, p, (lr, i), (lr, j)))
    thumbs = _thumbs({k: cand[k] for _, _, a, b in todo for k in (a, b)}, load, root)
    for lr, p, a, b in todo:
        if a in thumbs and b in thumbs:
            dist[lr, p] = float(np.mean(np.abs(thumbs[a] - thumbs[b])))
    return dist


def _thumbs(cand: dict, load: bool, root: Path | None) -> dict[tuple[int, int], np.ndarray]:
    out, todo = {}, []
    for k, c in cand.items():
        t = _get(c, "thumb")
        if isinstance(t, np.ndarray):
            out[k] = thumbnail(t)
        elif t is not None or load:
            path = Path(t if t is not None else _get(c, "output_path"))
            todo.append((k, path if path.is_absolute() or root is None else Path(root) / path))
    if todo:
        with ThreadPoolExecutor(8) as pool:  # OpenCV's decoder releases the GIL
            out.update(zip([k for k, _ in todo], pool.map(thumbnail, [p for _, p in todo]), strict=True))
    return out


def _excluded(exclude: Iterable[Any], lrs: list, models: list, pairs: list, cand: dict) -> np.ndarray:
    """(L, P) cells named in ``exclude`` by ``(lr_key, model, model)`` (either order) or by ``pair_id``."""
    out = np.zeros((len(lrs), len(pairs)), bool)
    li, mi = {k: n for n, k in enumerate(lrs)}, {m: n for n, m in enumerate(models)}
    pi = {pair: n for n, pair in enumerate(pairs)}
    ids = set()
    for e in exclude:
        if isinstance(e, str):
            ids.add(e)
            continue
        lr, x, y = e
        if lr in li and x in mi and y in mi and x != y:
            out[li[lr], pi[tuple(sorted((mi[x], mi[y])))]] = True
    if ids:
        for (lr, i), a in cand.items():
            for j in range(i + 1, len(models)):
                b = cand.get((lr, j))
                if b is not None and _cell_id(lrs[lr], models, i, j, a, b) in ids:
                    out[lr, pi[(i, j)]] = True
    return out


def _cell_id(lr: str, models: list[str], i: int, j: int, a: Any, b: Any) -> str:
    return pair_id(lr, models[i], str(_get(a, "model_version")), models[j], str(_get(b, "model_version")))


# ---------------------------------------------------------------------------------------------------- balanced


def _quotas(avail: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Water-filling degree bands: the largest level v with sum(min(a, v)) <= total; lo = min(a, v), hi = lo + 1
    where a > v. Requires total <= sum(a)."""
    a = np.asarray(avail, np.int64)
    lo_v, hi_v = 0, int(a.max(initial=0))
    while lo_v < hi_v:  # largest v with sum(min(a, v)) <= total
        mid = (lo_v + hi_v + 1) // 2
        if np.minimum(a, mid).sum() <= total:
            lo_v = mid
        else:
            hi_v = mid - 1
    lo = np.minimum(a, lo_v)
    return lo, lo + (a > lo_v)


def _flow_select(
    avail: np.ndarray, bands: tuple[np.ndarray, ...], total: int, perm_lr: np.ndarray, perm_pair: np.ndarray
) -> np.ndarray | None:
    """Cells (L, P) with every pair's degree in [pair_lo, pair_hi] and every LR's in [lr_lo, lr_hi], ``total`` in all,
    or None when no such selection exists (max flow < total)."""
    pair_lo, pair_hi, lr_lo, lr_hi = bands
    n_lr, n_pair = avail.shape
    src, xp, yl, snk = 0, 1, 2 + n_pair + n_lr, 3 + n_pair + n_lr
    pn, ln = 2 + perm_pair, 2 + n_pair + perm_lr  # node of pair p, of LR l
    lr_idx, p_idx = np.nonzero(avail)
    edges = [
        (np.zeros(n_pair, int), pn, pair_lo),
        ([src], [xp], [total - pair_lo.sum()]),
        (np.ones(n_pair, int), pn, pair_hi - pair_lo),
        (pn[p_idx], ln[lr_idx], np.ones(len(p_idx), int)),
        (ln, np.full(n_lr, snk), lr_lo),
        (ln, np.full(n_lr, yl), lr_hi - lr_lo),
        ([yl], [snk], [total - lr_lo.sum()]),
    ]
    u, v, c = (np.concatenate([np.asarray(e[k], np.int64) for e in edges]) for k in range(3))
    keep = c > 0
    n = snk + 1
    graph = csr_matrix((c[keep].astype(np.int32), (u[keep], v[keep])), shape=(n, n))
    res = maximum_flow(graph, src, snk)
    if res.flow_value < total:
        return None
    flow = res.flow.tocsr()
    used = np.asarray(flow[pn[p_idx], ln[lr_idx]]).ravel() > 0
    sel = np.zeros_like(avail)
    sel[lr_idx[used], p_idx[used]] = True
    return sel


def _spread(
    avail: np.ndarray, pair_lo: np.ndarray, pair_hi: np.ndarray, total: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Select ``total`` cells with pair degrees in their bands and LRs as even as the cells allow; returns the
    selection and by how much the LR band had to be widened (0 = LRs within their water-filled band)."""
    n_lr, n_pair = avail.shape
    per_lr = avail.sum(axis=1)
    lr_lo, lr_hi = _quotas(per_lr, total)
    perm_lr, perm_pair = rng.permutation(n_lr), rng.permutation(n_pair)

    def attempt(k: int) -> np.ndarray | None:
        bands = (pair_lo, pair_hi, np.maximum(lr_lo - k, 0), np.minimum(lr_hi + k, per_lr))
        return _flow_select(avail, bands, total, perm_lr, perm_pair)

    sel = attempt(0)
    if sel is not None:
        return sel, 0
    lo, hi = 1, int(per_lr.max(initial=0))  # feasible at hi: LRs unconstrained, pair quotas <= their cells
    while lo < hi:
        mid = (lo + hi) // 2
        if attempt(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    sel = attempt(lo)
    assert sel is not None, "pair quotas exceed the available cells"
    return sel, lo


def _balanced(grid: _Grid, target: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    pair_lo, pair_hi = _quotas(grid.avail.sum(axis=0), target)
    return _spread(grid.avail, pair_lo, pair_hi, target, rng)


# ---------------------------------------------------------------------------------------------------- active


def _prior(grid: _Grid, estimates: Mapping[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariance over ``grid.models``: the estimates' ``covariance`` where they carry one (``BTEstimates``),
    else diagonal; models missing from the estimates get the mean of the known means and std ``max(1, largest known
    std)``; stds are capped at ``MAX_STD`` (a capped model's covariances are dropped)."""
    known = [estimates[m] for m in grid.models if m in estimates]
    if not known:
        raise ValueError(f"estimates cover none of the models {grid.models}")
    mean0 = float(np.mean([mu for mu, _ in known]))
    std0 = max(1.0, max(min(float(sd), MAX_STD) for _, sd in known))
    mu = np.array([float(estimates[m][0]) if m in estimates else mean0 for m in grid.models])
    sd = np.array([float(estimates[m][1]) if m in estimates else std0 for m in grid.models])
    if not np.all(np.isfinite(mu)) or np.any(np.isnan(sd)) or np.any(sd < 0):
        raise ValueError("estimates must be finite means and non-negative stds")
    cov = np.diag(np.minimum(sd, MAX_STD) ** 2)
    full, names = getattr(estimates, "covariance", None), getattr(estimates, "models", None)
    if full is not None and names is not None:
        at = {m: k for k, m in enumerate(names)}
        idx = [k for k, m in enumerate(grid.models) if m in at and sd[k] < MAX_STD]
        src = [at[grid.models[k]] for k in idx]
        cov[np.ix_(idx, idx)] = np.asarray(full)[np.ix_(src, src)]
    return mu, cov + np.eye(len(mu)) * 1e-9


def _active_counts(
    grid: _Grid,
    estimates: Mapping[str, tuple[float, float]] | Sequence[Mapping[str, tuple[float, float]]],
    target: int,
    rng: np.random.Generator,
    kind: Acquisition,
    min_per_pair: int = 0,
) -> tuple[np.ndarray, list[list[float]]]:
    """Greedy batch: how many comparisons each model pair gets, and the score of each pick, in pick order.
    ``estimates``: one fit, or one per criterion judged in the same comparison (consistency and naturalness): one
    answer informs every criterion, so a pair's score is the sum over criteria, and the believer update runs on each.
    ``min_per_pair``: model pairs with fewer comparisons than this (already asked, i.e. excluded cells, plus picks
    in this batch) are picked first, whatever their score (forced exploration against early lock-in; measured in
    ``benchmarks/pairs_active.py``: no gain over fresh seeds, so it is off by default)."""
    fits = [estimates] if isinstance(estimates, Mapping) else list(estimates)
    priors = [_prior(grid, e) for e in fits]
    cap = grid.avail.sum(axis=0)
    asked = (grid.present & grid.excluded).sum(axis=0)
    counts = np.zeros(len(grid.pairs), np.int64)
    scores: list[list[float]] = [[] for _ in grid.pairs]
    order = rng.permutation(len(grid.pairs))  # ties go to the earlier pair in this seeded order
    for _ in range(target):
        total = sum(acquisition_scores(mu, cov, grid.pairs, kind) for mu, cov in priors)
        s = np.where(counts < cap, total, -np.inf)
        s = np.where((asked + counts < min_per_pair) & (counts < cap), np.inf, s)[order]
        k = int(order[int(np.argmax(s))])
        counts[k] += 1
        scores[k].append(float(s.max()))
        i, j = grid.pairs[k]
        for n, (mu, cov) in enumerate(priors):
            info = expit(mu[i] - mu[j]) * expit(mu[j] - mu[i])
            sx = cov[:, i] - cov[:, j]  # believer update: cov -= info * (cov x)(cov x)^T / (1 + info * x^T cov x)
            priors[n] = (mu, cov - np.outer(sx, sx) * (info / (1 + info * (sx[i] - sx[j]))))
    return counts, scores


# ---------------------------------------------------------------------------------------------------- build


def _sides(sel: np.ndarray, rng: np.random.Generator) -> dict[tuple[int, int], tuple[str, int]]:
    """Model pairs in seeded order, each pair's cells in seeded order, and along that one sequence "a"/"b"
    alternately from a seeded start: every pair's cells alternate (its count of "a" is within 1/2 of half) and so does
    the whole set. Also each cell's rank within its pair (used to hand out active scores)."""
    out = {}
    parity = int(rng.integers(2))
    for p in rng.permutation(sel.shape[1]):
        lrs = np.flatnonzero(sel[:, p])
        for rank, k in enumerate(rng.permutation(len(lrs))):
            out[(int(lrs[k]), int(p))] = ("ab"[parity], rank)
            parity ^= 1
    return out


def recorded_path(path: str | Path, root: Path | None) -> str:
    """A candidate's ``output_path`` as the pairs table records it: relative to the workspace ``root`` (POSIX
    separators), so that the table, and the Label Studio tasks made from it, stay valid when the workspace is moved or
    copied. A relative path is taken as already relative to ``root``; an absolute one must lie inside ``root``
    (without a ``root``, paths are kept as given)."""
    p = Path(path)
    if not p.is_absolute() or root is None:
        if p.is_absolute():
            return str(p)
        if ".." in p.parts:
            raise ValueError(f"candidate output {path} leaves the workspace ('..'): record paths inside it")
        return p.as_posix()
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ValueError(
            f"candidate output {path} is outside the workspace {root}: pairs record paths relative to "
            "the workspace; run `sr4k candidates run` in this workspace"
        ) from None


def _records(
    grid: _Grid,
    sel: np.ndarray,
    strategy: str,
    seed: int,
    rng: np.random.Generator,
    scores: list[list[float]] | None,
    root: Path | None = None,
) -> list[PairRec]:
    sides = _sides(sel, rng)
    recs = []
    for lr, p in sorted(sides):
        i, j = grid.pairs[p]
        a, b = grid.cand[(lr, i)], grid.cand[(lr, j)]
        left, rank = sides[(lr, p)]
        dist = grid.distance[lr, p]
        recs.append(
            PairRec(
                _cell_id(grid.lrs[lr], grid.models, i, j, a, b),
                grid.lrs[lr],
                grid.models[i],
                grid.models[j],
                str(_get(a, "model_version")),
                str(_get(b, "model_version")),
                recorded_path(_get(a, "output_path"), root),
                recorded_path(_get(b, "output_path"), root),
                left,
                strategy,
                scores[p][rank] if scores else None,
                None if np.isnan(dist) else float(dist),
                seed,
            )
        )
    return recs


def _unreachable(grid: _Grid, target: int, min_distance: float) -> str:
    n_lr, n_pair = grid.present.shape
    full = n_lr * n_pair
    possible = int(grid.avail.sum())
    why = [f"{n_lr} LR images x {n_pair} model pairs ({len(grid.models)} models) = {full} distinct pairs"]
    if (missing := full - int(grid.present.sum())) > 0:
        why.append(f"{missing} lack an output of one of the two models")
    if (pruned := int(grid.pruned.sum())) > 0:
        why.append(f"{pruned} pruned as near-identical (perceptual distance < {min_distance:g})")
    if (excluded := int((grid.excluded & ~grid.pruned).sum())) > 0:
        why.append(f"{excluded} excluded as already built")
    detail = why[0] + (f", minus {', '.join(why[1:])}" if len(why) > 1 else "")
    return (
        f"target {target} is not reachable: only {possible} distinct pairs are possible ({detail}); add LR images "
        "or models, or lower --target"
    )


def build_pairs(
    candidates: Sequence[Any],
    target: int,
    strategy: Strategy = "balanced",
    seed: int = 0,
    min_distance: float = MIN_DISTANCE,
    estimates: Mapping[str, tuple[float, float]] | Sequence[Mapping[str, tuple[float, float]]] | None = None,
    *,
    acquisition: Acquisition = "order",
    exclude: Iterable[str | tuple[str, str, str]] = (),
    root: str | Path | None = None,
    min_per_pair: int = 0,
) -> tuple[list[PairRec], dict[str, Any]]:
    """Choose ``target`` A/B comparisons among the candidates (strategies, pruning, sides: see the module doc).

    ``candidates``: ``Candidate``s, dicts or any objects with ``lr_key``, ``model``, ``model_version``,
    ``output_path`` and optionally ``thumb`` / ``output_sha256``; one per (LR, model). ``exclude``: ``pair_id``s or
    ``(lr_key, model, model)`` cells never to build (e.g. those already annotated). ``root``: the workspace; relative
    ``output_path``s are resolved against it and every recorded ``path_a``/``path_b`` is relative to it
    (``recorded_path``). Returns ``(pairs, report)``,
    pairs sorted by (lr_key, model_a, model_b); report: possible (cells after pruning and exclusion),
    pruned_near_identical, excluded, missing, requested, built, per_model_pair ("a vs b" -> count), per_lr,
    lr_band_widened_by, left_a, cold_start. Raises ValueError when the target cannot be met, with the numbers."""
    if strategy not in ("balanced", "all", "active"):
        raise ValueError(f"unknown strategy {strategy!r}: balanced, all or active")
    grid = _grid(candidates, min_distance, exclude, None if root is None else Path(root))
    possible = int(grid.avail.sum())
    if target > possible:
        raise ValueError(_unreachable(grid, target, min_distance))
    if strategy == "all" and target not in (0, possible):
        msg = f"strategy 'all' builds all {possible} possible pairs but target is {target}: pass target=0 (or "
        raise ValueError(msg + f"{possible}) for all of them, or use strategy 'balanced' to choose {target} evenly")
    if strategy != "all" and target <= 0:
        raise ValueError(f"target must be positive for strategy {strategy!r} (got {target})")
    rng = np.random.default_rng(seed)
    scores, widened = None, 0
    if strategy == "all":
        sel = grid.avail.copy()
    elif strategy == "active" and estimates:
        counts, scores = _active_counts(grid, estimates, target, rng, acquisition, min_per_pair)
        sel, widened = _spread(grid.avail, counts, counts, target, rng)
    else:
        sel, widened = _balanced(grid, target, rng)
    recs = _records(grid, sel, strategy, seed, rng, scores, None if root is None else Path(root))
    report = {
        "strategy": strategy,
        "seed": seed,
        "possible": possible,
        "pruned_near_identical": int(grid.pruned.sum()),
        "excluded": int((grid.excluded & ~grid.pruned).sum()),
        "missing": int((~grid.present).sum()),
        "requested": target,
        "built": len(recs),
        "per_model_pair": {grid.pair_name(p): int(n) for p, n in enumerate(sel.sum(axis=0))},
        "per_lr": {lr: int(n) for lr, n in zip(grid.lrs, sel.sum(axis=1), strict=True)},
        "lr_band_widened_by": widened,
        "left_a": sum(r.left == "a" for r in recs),
        "cold_start": strategy == "active" and not estimates,
    }
    return recs, report
