import dataclasses
import math
import time
from collections import Counter

import choix
import cv2
import numpy as np
import pytest
from scipy.special import expit

from pipelines.pairs.bradley_terry import (
    ACQUISITIONS,
    BT_ALPHA,
    BTEstimates,
    _ilsr_counts,
    acquisition_scores,
    fit_bradley_terry,
)
from pipelines.pairs.build import (
    PAIRS,
    Candidate,
    PairRec,
    build_pairs,
    pair_id,
    pairs_table,
    perceptual_distance,
    thumbnail,
)


def grid(n_lr: int, n_models: int, thumbs: bool = False, seed: int = 0) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    return [
        Candidate(
            f"lr{lr:04d}",
            f"m{m}",
            "v1",
            f"out/{lr}-{m}.png",
            thumb=rng.random((64, 64), dtype=np.float32) if thumbs else None,
        )
        for lr in range(n_lr)
        for m in range(n_models)
    ]


def spread(counts: dict) -> int:
    return max(counts.values()) - min(counts.values())


def check_valid(pairs: list[PairRec]) -> None:
    cells = [(p.lr_key, p.model_a, p.model_b) for p in pairs]
    assert all(p.model_a < p.model_b for p in pairs), "self-pair or unordered pair"
    assert len(set(cells)) == len(cells), "the same (LR, model pair) twice"
    assert len({p.pair_id for p in pairs}) == len(pairs)
    assert all("." not in p.pair_id and p.pair_id.startswith("pr-") for p in pairs)


@pytest.mark.parametrize(
    ("n_lr", "n_models", "target"),
    [(5, 4, 7), (5, 4, 13), (5, 4, 30), (7, 5, 23), (3, 6, 40), (40, 3, 17), (12, 7, 100)],
)
def test_balanced_counts_differ_by_at_most_one(n_lr, n_models, target):
    pairs, rep = build_pairs(grid(n_lr, n_models), target, min_distance=0, seed=3)
    check_valid(pairs)
    assert len(pairs) == rep["built"] == target
    per_pair = Counter(f"{p.model_a} vs {p.model_b}" for p in pairs)
    assert per_pair == Counter({k: v for k, v in rep["per_model_pair"].items() if v})
    assert len(rep["per_model_pair"]) == n_models * (n_models - 1) // 2
    assert spread(rep["per_model_pair"]) <= 1
    assert len(rep["per_lr"]) == n_lr and spread(rep["per_lr"]) <= 1
    assert rep["lr_band_widened_by"] == 0


def test_balanced_18000_pairs_on_1500_lrs_is_fast_and_exact():
    cands = grid(1500, 6)
    t0 = time.perf_counter()
    pairs, rep = build_pairs(cands, 18000, min_distance=0, seed=1)
    assert time.perf_counter() - t0 < 5.0
    check_valid(pairs)
    assert set(rep["per_model_pair"].values()) == {1200}  # 18000 / 15
    assert set(rep["per_lr"].values()) == {12}  # 18000 / 1500
    assert rep["left_a"] == 9000


def test_balanced_with_thumbnails_at_scale_is_fast():
    cands = grid(1500, 6, thumbs=True)
    t0 = time.perf_counter()
    pairs, rep = build_pairs(cands, 17999, seed=2)
    assert time.perf_counter() - t0 < 10.0
    assert rep["pruned_near_identical"] == 0 and spread(rep["per_model_pair"]) <= 1 and spread(rep["per_lr"]) <= 1
    assert all(p.distance is not None and p.distance > 0.1 for p in pairs)


def test_when_lrs_cannot_be_even_pairs_stay_balanced_and_the_report_says_so():
    """m0 has an output for lr0000 only, so two of the three model pairs exist on lr0000 alone: with 3 pairs (one per
    model pair) lr0000 must take two, beyond the LR band of 0..1 (3 pairs over 4 LRs)."""
    cands = [c for c in grid(4, 3) if c.model != "m0" or c.lr_key == "lr0000"]
    pairs, rep = build_pairs(cands, 3, min_distance=0)
    check_valid(pairs)
    assert set(rep["per_model_pair"].values()) == {1}
    assert rep["per_lr"]["lr0000"] == 2 and rep["lr_band_widened_by"] == 1


def identical_models(n_lr: int = 6, n_models: int = 4) -> list[Candidate]:
    """m0 and m1 produce identical outputs on every LR."""
    cands = grid(n_lr, n_models, thumbs=True)
    by = {(c.lr_key, c.model): c for c in cands}
    for lr in range(n_lr):
        by[(f"lr{lr:04d}", "m1")].thumb = by[(f"lr{lr:04d}", "m0")].thumb.copy()
    return cands


def test_pruning_removes_near_identical_pairs_and_keeps_the_rest_balanced():
    pairs, rep = build_pairs(identical_models(), 20, seed=0)
    check_valid(pairs)
    assert rep["pruned_near_identical"] == 6 and rep["possible"] == 6 * 6 - 6
    assert not any((p.model_a, p.model_b) == ("m0", "m1") for p in pairs)
    assert rep["per_model_pair"]["m0 vs m1"] == 0
    others = {k: v for k, v in rep["per_model_pair"].items() if k != "m0 vs m1"}
    assert set(others.values()) == {4}  # 20 over the 5 remaining pairs
    assert spread(rep["per_lr"]) <= 1
    # min_distance=0 keeps them; the distance is recorded as 0
    pairs, rep = build_pairs(identical_models(), 36, seed=0, min_distance=0)
    assert rep["pruned_near_identical"] == 0
    assert {p.distance for p in pairs if p.model_b == "m1"} == {0.0}


def test_pruning_loads_pngs_and_uses_equal_hashes(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    other = np.ascontiguousarray(img[:, ::-1])
    for name, px in {"a": img, "b": img, "c": other}.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), px)
    cands = [{"lr_key": "x", "model": m, "model_version": "1", "output_path": f"{m}.png"} for m in "abc"]
    pairs, rep = build_pairs(cands, 2, root=tmp_path)  # relative paths resolve against root
    assert rep["pruned_near_identical"] == 1
    assert {(p.model_a, p.model_b) for p in pairs} == {("a", "c"), ("b", "c")}
    assert perceptual_distance(tmp_path / "a.png", tmp_path / "b.png") == 0.0
    assert perceptual_distance(tmp_path / "a.png", tmp_path / "c.png") > 0.01
    # the thumbnail of a file equals the thumbnail of its pixels (BT.601 luma, area-downscaled, in [0, 1])
    # (up to rounding: OpenCV's grayscale PNG read and cvtColor round differently, by one grey level at most)
    rgb = img[..., ::-1]  # imwrite took img as BGR
    assert perceptual_distance(tmp_path / "a.png", rgb) < 0.5 / 255
    assert thumbnail(rgb).shape == (64, 64) and thumbnail(rgb).dtype == np.float32
    sixteen = thumbnail(rgb.astype(np.uint16) * 257)  # 16-bit input is scaled by 65535
    np.testing.assert_allclose(sixteen, thumbnail(rgb), atol=1 / 255)


def test_paths_are_recorded_relative_to_the_workspace(tmp_path):
    """A pairs table, and every Label Studio task made from it, must stay valid when the workspace moves: paths are
    recorded relative to the workspace whatever form the candidates give them in."""
    ws = tmp_path / "ws"
    cands = [
        Candidate("x", "a", "1", "images/aa/a.png", thumb=np.zeros((64, 64), np.float32)),
        Candidate("x", "b", "1", str(ws / "images" / "bb" / "b.png"), thumb=np.ones((64, 64), np.float32)),
        Candidate("y", "a", "1", str(ws / "images/../images/cc/c.png"), thumb=np.zeros((64, 64), np.float32)),
        Candidate("y", "b", "1", "images/dd/d.png", thumb=np.ones((64, 64), np.float32)),
    ]
    pairs, _ = build_pairs(cands, 2, root=ws)
    got = {(p.lr_key, p.model_a): p.path_a for p in pairs} | {(p.lr_key, p.model_b): p.path_b for p in pairs}
    assert got == {
        ("x", "a"): "images/aa/a.png",
        ("x", "b"): "images/bb/b.png",
        ("y", "a"): "images/cc/c.png",
        ("y", "b"): "images/dd/d.png",
    }
    outside = [*cands[:1], Candidate("x", "b", "1", str(tmp_path / "elsewhere.png"), thumb=np.ones((64, 64)))]
    with pytest.raises(ValueError, match="outside the workspace"):
        build_pairs(outside, 1, root=ws)
    with pytest.raises(ValueError, match="leaves the workspace"):
        build_pairs([*cands[:1], Candidate("x", "b", "1", "../b.png", thumb=np.ones((64, 64)))], 1, root=ws)


def test_equal_output_hashes_are_identical_without_loading():
    cands = [Candidate("x", m, "1", "/nonexistent.png", output_sha256="same") for m in "ab"]
    cands.append(Candidate("x", "c", "1", "/nonexistent.png", thumb=np.zeros((64, 64), np.float32)))
    with pytest.raises(ValueError, match=r"only 0 distinct pairs.*1 pruned as near-identical"):
        build_pairs(cands[:2], 1)
    pairs, _ = build_pairs(cands[:2], 0, "all", min_distance=0)
    assert [p.distance for p in pairs] == [0.0]
    with pytest.raises(FileNotFoundError):  # a different output: its thumbnail must be loaded
        build_pairs(cands, 1)


def test_unreachable_target_says_how_many_and_why():
    cands = identical_models(n_lr=3, n_models=4)
    with pytest.raises(ValueError) as e:
        build_pairs(cands, 20)
    msg = str(e.value)
    assert "target 20 is not reachable: only 15 distinct pairs" in msg
    assert "3 LR images x 6 model pairs (4 models) = 18 distinct pairs" in msg
    assert "3 pruned as near-identical" in msg and "lower --target" in msg
    missing = [c for c in grid(3, 4) if (c.lr_key, c.model) != ("lr0000", "m3")]
    with pytest.raises(ValueError, match=r"only 15 distinct pairs .*3 lack an output"):
        build_pairs(missing, 16, min_distance=0)
    with pytest.raises(ValueError, match="target must be positive"):
        build_pairs(grid(3, 4), 0, min_distance=0)


def test_all_means_all():
    pairs, rep = build_pairs(grid(4, 4), 0, "all", min_distance=0)
    check_valid(pairs)
    assert len(pairs) == rep["possible"] == 24
    assert build_pairs(grid(4, 4), 24, "all", min_distance=0)[0] == pairs
    with pytest.raises(ValueError, match="use strategy 'balanced' to choose 10"):
        build_pairs(grid(4, 4), 10, "all", min_distance=0)
    with pytest.raises(ValueError, match="only 24 distinct pairs"):
        build_pairs(grid(4, 4), 25, "all", min_distance=0)


def test_no_duplicate_candidates_and_no_self_pairs():
    cands = [*grid(2, 3), Candidate("lr0000", "m0", "v2", "other.png")]
    with pytest.raises(ValueError, match="two candidates for LR 'lr0000' and model 'm0'"):
        build_pairs(cands, 1, min_distance=0)
    pairs, _ = build_pairs(grid(1, 1), 0, "all", min_distance=0)
    assert pairs == []


def test_exclude_never_rebuilds_a_cell():
    cands = grid(5, 4)
    first, _ = build_pairs(cands, 15, min_distance=0, seed=0)
    second, rep = build_pairs(cands, 15, min_distance=0, seed=0, exclude=[p.pair_id for p in first])
    assert rep["excluded"] == 15 and rep["possible"] == 15
    assert not {p.pair_id for p in first} & {p.pair_id for p in second}
    by_cell, _ = build_pairs(cands, 15, min_distance=0, exclude=[(p.lr_key, p.model_b, p.model_a) for p in first])
    assert {p.pair_id for p in by_cell} == {p.pair_id for p in second}
    with pytest.raises(ValueError, match="15 excluded as already built"):
        build_pairs(cands, 16, min_distance=0, exclude=[p.pair_id for p in first])


def test_deterministic_for_a_seed_and_input_order_free():
    cands = grid(30, 5)
    a, rep_a = build_pairs(cands, 77, seed=5, min_distance=0)
    b, rep_b = build_pairs(list(reversed(cands)), 77, seed=5, min_distance=0)
    assert a == b and rep_a == rep_b
    c, _ = build_pairs(cands, 77, seed=6, min_distance=0)
    assert {p.pair_id for p in a} != {p.pair_id for p in c}
    assert [p.left for p in a] != [p.left for p in c]


def test_sides_are_half_and_half_overall_and_per_model_pair():
    pairs, rep = build_pairs(grid(200, 6), 1001, seed=9, min_distance=0)
    assert abs(rep["left_a"] - 1001 / 2) <= 0.5
    per = Counter()
    for p in pairs:
        per[(p.model_a, p.model_b)] += 1 if p.left == "a" else -1
    assert all(abs(v) <= 1 for v in per.values())
    # and not a fixed pattern: across seeds each cell's side varies
    lefts = [{p.pair_id: p.left for p in build_pairs(grid(10, 3), 30, seed=s, min_distance=0)[0]} for s in range(8)]
    assert all(len({lft[k] for lft in lefts}) == 2 for k in lefts[0])


def test_pair_id_is_stable_and_order_free():
    assert pair_id("x", "b", "2", "a", "1") == pair_id("x", "a", "1", "b", "2")
    assert pair_id("x", "a", "1", "b", "2") != pair_id("x", "a", "1", "b", "3")


def test_table_matches_schema():
    pairs, _ = build_pairs(grid(3, 3, thumbs=True), 5, "active", estimates={"m0": (0, 1), "m1": (0.2, 1)})
    table = pairs_table(pairs)
    assert table.schema.equals(PAIRS, check_metadata=True)
    assert [f.name for f in dataclasses.fields(PairRec)] == PAIRS.names
    assert PAIRS.metadata[b"schema_version"] == b"1"


def test_active_prefers_close_uncertain_models():
    est = {"A": (0.0, 1.0), "B": (0.1, 1.0), "C": (5.0, 1.0)}
    cands = [Candidate(f"lr{k}", m, "1", f"{k}{m}.png") for k in range(20) for m in "ABC"]
    for acquisition in ACQUISITIONS:
        (one,), _ = build_pairs(cands, 1, "active", estimates=est, min_distance=0, acquisition=acquisition)
        assert (one.model_a, one.model_b) == ("A", "B") and one.score > 0
        pairs, rep = build_pairs(cands, 12, "active", estimates=est, min_distance=0, acquisition=acquisition)
        check_valid(pairs)
        assert rep["per_model_pair"]["A vs B"] >= 10 and spread(rep["per_lr"]) <= 1
    # a certain pair is worth less than an uncertain one at the same distance
    est = {"A": (0.0, 0.05), "B": (0.3, 0.05), "C": (10.0, 1.0), "D": (10.3, 1.0)}
    cands = [Candidate("x", m, "1", f"{m}.png") for m in "ABCD"]
    (one,), _ = build_pairs(cands, 1, "active", estimates=est, min_distance=0)
    assert (one.model_a, one.model_b) == ("C", "D")


def test_active_uses_the_covariance_of_differences():
    """A and B float together on the scale (large, strongly correlated stds: their difference is well known); C and D
    are moderately uncertain and independent. Marginal stds alone say A vs B; the covariance says C vs D."""
    names = ["A", "B", "C", "D"]
    cov = np.array([[4.0, 3.99, 0, 0], [3.99, 4.0, 0, 0], [0, 0, 0.25, 0], [0, 0, 0, 0.25]])
    mean = {"A": 0.0, "B": 0.2, "C": 20.0, "D": 20.2}  # A, B far from C, D: cross pairs are clear
    plain = {m: (mean[m], float(np.sqrt(cov[k, k]))) for k, m in enumerate(names)}
    full = BTEstimates(plain, names, cov)
    cands = [Candidate("x", m, "1", f"{m}.png") for m in names]
    for acquisition in ACQUISITIONS:
        (p,), _ = build_pairs(cands, 1, "active", estimates=plain, min_distance=0, acquisition=acquisition)
        assert (p.model_a, p.model_b) == ("A", "B")
        (p,), _ = build_pairs(cands, 1, "active", estimates=full, min_distance=0, acquisition=acquisition)
        assert (p.model_a, p.model_b) == ("C", "D")


@pytest.mark.parametrize(
    "d, r, v",
    [
        (-0.4, 0.2, 0.6),
        (0.05, 0.01, 0.02),
        (1.0, 0.5, 0.51),
        (0.0, 0.3, 0.4),
        (2.0, 0.001, 0.5),
        (-3.0, 0.4, 0.41),
        (0.3, 0.0, 0.2),
    ],
)
def test_expected_misorder_closed_form_equals_numerical_integration(d, r, v):
    from scipy.integrate import quad
    from scipy.special import ndtr

    from pipelines.pairs.bradley_terry import expected_misorder

    if r > 0:
        f = lambda z: ndtr(-abs(d + np.sqrt(r) * z) / np.sqrt(v - r)) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731
        want = quad(f, -14, 14, points=[-d / np.sqrt(r)], limit=400, epsabs=1e-13)[0]
    else:
        want = ndtr(-abs(d) / np.sqrt(v))
    assert float(expected_misorder(d, r, v)) == pytest.approx(want, abs=1e-12)


def test_kg_star_matches_monte_carlo_and_values_horizons(monkeypatch):
    """The KG(*) score of a pair is the best over horizons H of the expected drop in sum_q P(misorder of q) per
    comparison. Check one (pair, horizon) term against a Monte Carlo of the preposterior, and the reason for the
    horizon: a pair whose order needs several outcomes to flip is worth more per comparison over 16 than over 1."""
    from scipy.special import ndtr

    from pipelines.pairs import bradley_terry as P

    mu = np.array([0.0, 0.4, 3.0])
    cov = np.diag([0.1, 0.1, 0.1])  # pair 0: d = -0.4, sd(d) = 0.45: one outcome almost never flips it, 16 may
    pairs = [(0, 1), (0, 2), (1, 2)]
    x = np.zeros((3, 3))
    for k, (i, j) in enumerate(pairs):
        x[i, k], x[j, k] = 1.0, -1.0
    u = x.T @ cov @ x
    d, v = np.array([mu[i] - mu[j] for i, j in pairs]), np.diag(u).copy()
    info = expit(d) * expit(-d)
    # Monte Carlo for pair 0 at H = 16: r_q = H info u_q0^2 / (1 + H info v_0); d_q' ~ N(d_q, r_q); v_q' = v_q - r_q
    h, rng = 16, np.random.default_rng(0)
    r = h * info[0] * u[:, 0] ** 2 / (1 + h * info[0] * v[0])
    z = rng.standard_normal((400_000, 1))
    mc = (ndtr(-np.abs(d) / np.sqrt(v)) - ndtr(-np.abs(d + np.sqrt(r) * z) / np.sqrt(v - r)).mean(0)).sum() / h
    monkeypatch.setattr(P, "KG_HORIZONS", (16,))
    at16 = P._kg_star(d, u, v, info)
    monkeypatch.setattr(P, "KG_HORIZONS", (1,))
    at1 = P._kg_star(d, u, v, info)
    monkeypatch.undo()
    assert at16[0] == pytest.approx(mc, rel=0.02)
    assert at16[0] > 100 * at1[0] > 0  # non-concave value of information: per comparison, 16 >> 1
    assert P._kg_star(d, u, v, info)[0] >= at16[0]
    assert np.argmax(P._kg_star(d, u, v, info)) == 0  # the close pair, not the settled ones


def _kalman_setup(mu: np.ndarray, cov: np.ndarray, pairs: list[tuple[int, int]]):
    x = np.zeros((len(mu), len(pairs)))
    for k, (i, j) in enumerate(pairs):
        x[i, k], x[j, k] = 1.0, -1.0
    u = x.T @ cov @ x
    d, v = np.array([mu[i] - mu[j] for i, j in pairs]), np.diag(u).copy()
    return d, u, v, expit(d) * expit(-d)


def test_ranking_kg_equals_its_formula_and_approximates_the_joint_preposterior(monkeypatch):
    """``ranking``: per horizon H, prod_q (1 - E[pi_q']) / prod_q (1 - pi_q) - 1 over H, each factor by numerical
    integration here; and the independence approximation against a Monte Carlo of the joint update (one outcome
    stream moves every d_q together: d_q' = d_q + sign(u_qk) sqrt(r_qk) Z with one Z)."""
    from scipy.integrate import quad
    from scipy.special import ndtr

    from pipelines.pairs import bradley_terry as P

    mu = np.array([0.0, 0.3, 0.5, 2.0])
    cov = np.array([[0.2, 0.05, 0, 0], [0.05, 0.2, 0.02, 0], [0, 0.02, 0.15, 0], [0, 0, 0, 0.3]])
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    d, u, v, info = _kalman_setup(mu, cov, pairs)
    h, k = 16, 0
    r = h * info[k] * u[:, k] ** 2 / (1 + h * info[k] * v[k])
    pi = ndtr(-np.abs(d) / np.sqrt(v))

    def after(q: int) -> float:
        if r[q] < 1e-14:
            return float(pi[q])
        f = lambda z: ndtr(-abs(d[q] + np.sqrt(r[q]) * z) / np.sqrt(v[q] - r[q])) * np.exp(-z * z / 2)  # noqa: E731
        return quad(f, -14, 14, points=[-d[q] / np.sqrt(r[q])], limit=400)[0] / np.sqrt(2 * np.pi)

    want = (np.prod([1 - after(q) for q in range(len(pairs))]) / np.prod(1 - pi) - 1) / h
    monkeypatch.setattr(P, "KG_HORIZONS", (h,))
    got = P._kg_star(d, u, v, info, "ranking")
    assert got[k] == pytest.approx(want, rel=1e-9)
    z = np.random.default_rng(0).standard_normal((400_000, 1))
    moved = d + np.sign(u[:, k]) * np.sqrt(r) * z
    joint = (np.prod(1 - ndtr(-np.abs(moved) / np.sqrt(v - r)), axis=1).mean() / np.prod(1 - pi) - 1) / h
    assert got[k] == pytest.approx(joint, rel=0.25)  # the approximation the docstring states, measured here
    monkeypatch.undo()
    assert acquisition_scores(mu, cov, pairs, "ranking").argmax() in (0, 1, 3)  # a close pair: 0-1, 0-2 or 1-2


def test_ranking_weights_open_pairs_more_than_kg():
    """To first order ``ranking`` is ``kg`` with each pair's drop weighted by 1 / (1 - pi_q): of two pairs with the
    same ``kg`` value, the one whose order is closer to a coin toss wins under ``ranking``."""
    from scipy.optimize import brentq

    # pair A-B: an exact tie, well measured; pair C-D: a clear lead, less measured. Tune C-D's variance until both
    # have the same kg score, then compare under ranking.
    def scores(var_cd: float, kind: str) -> np.ndarray:
        cov = np.diag([0.01, 0.01, var_cd, var_cd])
        mu = np.array([0.0, 0.0, 0.0, 0.5])
        return acquisition_scores(mu, cov, [(0, 1), (2, 3)], kind)

    var = brentq(lambda s: np.subtract(*scores(s, "kg")), 0.005, 0.5)
    kg, rank = scores(var, "kg"), scores(var, "ranking")
    assert kg[0] == pytest.approx(kg[1], rel=1e-6)
    assert rank[0] > 1.2 * rank[1]


def test_active_sums_the_criteria_of_one_comparison():
    """One answer judges both criteria: with one fit per criterion the batch serves both (each criterion's close
    pair), where either fit alone spends it on its own close pair."""
    cands = [Candidate(f"lr{k}", m, "1", f"{k}{m}.png") for k in range(30) for m in "ABCD"]
    consistency = {"A": (0.0, 0.5), "B": (0.05, 0.5), "C": (3.0, 0.5), "D": (6.0, 0.5)}
    naturalness = {"A": (0.0, 0.5), "B": (3.0, 0.5), "C": (6.0, 0.5), "D": (6.05, 0.5)}
    _, one = build_pairs(cands, 20, "active", estimates=consistency, min_distance=0)
    assert one["per_model_pair"]["A vs B"] >= 15
    _, both = build_pairs(cands, 20, "active", estimates=[consistency, naturalness], min_distance=0)
    got = both["per_model_pair"]
    assert got["A vs B"] >= 6 and got["C vs D"] >= 6, got


def test_estimates_from_a_ranking_file_carry_the_covariance():
    from pipelines.pairs.build import estimates_from_ranking

    cov = [[0.2, 0.1], [0.1, 0.2]]
    doc = {
        "rankings": {
            "consistency": [{"model": "x", "theta": 0.5, "std": 0.45}, {"model": "y", "theta": -0.5, "std": 0.45}],
            "naturalness": [{"model": "x", "theta": 0.0, "std": 1.0}, {"model": "y", "theta": 0.0, "std": None}],
        },
        "covariance": {"consistency": {"models": ["x", "y"], "matrix": cov}},
    }
    c, n = estimates_from_ranking(doc)
    assert c["x"] == (0.5, 0.45) and np.array_equal(c.covariance, cov) and c.models == ["x", "y"]
    assert n.covariance is None and n["y"] == (0.0, math.inf)  # never compared: null in JSON
    (only,) = estimates_from_ranking(doc, ["naturalness"])
    assert only["x"] == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"criteria \['zzz'\] not in the ranking file"):
        estimates_from_ranking(doc, ["zzz"])
    with pytest.raises(ValueError, match="not a ranking file"):
        estimates_from_ranking({"x": [0, 1]})


def test_active_min_per_pair_explores_under_compared_pairs_first():
    """Forced exploration: model pairs asked fewer than ``min_per_pair`` times (cells in ``exclude`` plus picks in
    this batch) are picked before the acquisition score decides."""
    est = {"A": (0.0, 1.0), "B": (0.1, 1.0), "C": (5.0, 1.0), "D": (9.0, 1.0)}
    cands = [Candidate(f"lr{k}", m, "1", f"{k}{m}.png") for k in range(20) for m in "ABCD"]
    asked = [(f"lr{k}", "A", "B") for k in range(5)] + [("lr0", "C", "D")]
    pairs, rep = build_pairs(cands, 6, "active", estimates=est, min_distance=0, exclude=asked)
    assert rep["per_model_pair"].get("A vs B", 0) >= 5  # the score alone: the close, uncertain pair
    pairs, rep = build_pairs(cands, 12, "active", estimates=est, min_distance=0, exclude=asked, min_per_pair=2)
    check_valid(pairs)
    got = rep["per_model_pair"]
    assert got["C vs D"] == 1  # asked once already
    for p in ("A vs C", "A vs D", "B vs C", "B vs D"):
        assert got[p] == 2, got
    assert got.get("A vs B", 0) == 3  # 12 - 1 - 4 x 2 = 3 picks go back to the score


def test_active_without_estimates_starts_balanced():
    pairs, rep = build_pairs(grid(10, 4), 18, "active", min_distance=0)
    assert rep["cold_start"] and all(p.score is None and p.strategy == "active" for p in pairs)
    assert spread(rep["per_model_pair"]) <= 1 and spread(rep["per_lr"]) <= 1


def simulate(theta: np.ndarray, n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(theta), 2, replace=False)
        win = rng.random() < expit(theta[a] - theta[b])
        out.append((f"m{a}", f"m{b}") if win else (f"m{b}", f"m{a}"))
    return out


def test_bradley_terry_recovers_the_order_and_matches_choix():
    theta = np.array([-1.5, -0.8, 0.0, 0.6, 1.2, 2.0])
    models = [f"m{k}" for k in range(6)]
    comps = simulate(theta, 3000, seed=0)
    est = fit_bradley_terry(comps, models, bootstrap=100)
    mean = np.array([est[m][0] for m in models])
    assert est.models == models and est.covariance.shape == (6, 6)
    np.testing.assert_allclose(np.sqrt(np.diag(est.covariance)), [est[m][1] for m in models])
    assert list(np.argsort(mean)) == list(range(6))
    data = [(int(w[1:]), int(lo[1:])) for w, lo in comps]
    np.testing.assert_array_equal(mean, choix.ilsr_pairwise(6, data, alpha=BT_ALPHA))
    np.testing.assert_allclose(mean, theta - theta.mean(), atol=0.2)


def test_vectorised_bootstrap_fit_equals_choix():
    comps = simulate(np.array([0.0, 0.5, 3.0, -2.0]), 60, seed=1)
    data = [(int(w[1:]), int(lo[1:])) for w, lo in comps]
    counts = np.zeros((4, 4))
    np.add.at(counts, tuple(np.array(data).T), 1.0)
    for alpha in (BT_ALPHA, 0.5):
        np.testing.assert_allclose(
            _ilsr_counts(counts[None], alpha)[0], choix.ilsr_pairwise(4, data, alpha=alpha), atol=1e-9
        )


def test_bradley_terry_std_shrinks_with_more_data():
    theta = np.array([0.0, 0.4, 0.8, 1.2, 1.6])
    models = [f"m{k}" for k in range(5)]
    small = fit_bradley_terry(simulate(theta, 200, seed=2), models, bootstrap=200, seed=0)
    large = fit_bradley_terry(simulate(theta, 2000, seed=2), models, bootstrap=200, seed=0)
    s_small = np.mean([small[m][1] for m in models])
    s_large = np.mean([large[m][1] for m in models])
    assert s_large < 0.5 * s_small  # ~1/sqrt(10)
    assert fit_bradley_terry(simulate(theta, 200, seed=2), models, bootstrap=200, seed=0) == small  # seeded
    # the Laplace approximation: same point estimate, a std of the same size as the bootstrap's
    lap = fit_bradley_terry(simulate(theta, 2000, seed=2), models, uncertainty="laplace")
    assert all(lap[m][0] == large[m][0] for m in models)
    ratio = np.array([lap[m][1] / large[m][1] for m in models])
    assert np.all((ratio > 0.7) & (ratio < 1.4))
    np.testing.assert_allclose(lap.covariance.sum(axis=0), 0.0, atol=1e-12)  # centred, like theta


def test_bradley_terry_edge_cases():
    models = ["a", "b", "c"]
    est = fit_bradley_terry([("a", "b")] * 5, models, bootstrap=50)
    assert est["a"][0] > est["b"][0] and np.isfinite(est["a"][0])  # a model with no wins still gets a finite value
    assert est["c"][1] == float("inf")  # never compared
    assert fit_bradley_terry([], models) == {m: (0.0, float("inf")) for m in models}
    assert np.isnan(fit_bradley_terry([("a", "b")], models, bootstrap=0)["a"][1])
    with pytest.raises(ValueError, match="not in the list"):
        fit_bradley_terry([("a", "z")], models)
    with pytest.raises(ValueError, match="itself"):
        fit_bradley_terry([("a", "a")], models)
