"""Bradley–Terry for pairwise preferences: the fit with uncertainty, and how informative one more comparison is.

Used by the pair builder (``pipelines.pairs.build``, active selection), by the aggregation of human rankings
(``labelling.aggregate``) and by ``benchmarks/pairs_active.py``.

Acquisition (``acquisition_scores``; formulas and measured results in ``pairs.build``'s module doc): given means
``mu`` and covariance ``cov`` of the models' BT parameters, how much one more comparison of each model pair is worth:
``variance``, ``order`` (default), ``kendall`` (one-step lookahead on the expected number of discordant pairs),
``kg`` (KG(*): that lookahead over horizons of 1..64 comparisons, with the closed-form ``expected_misorder``) and
``ranking`` (KG(*) on the probability that the whole ranking is right).

Bradley–Terry
    ``fit_bradley_terry`` maximises the BT likelihood P(i beats j) = sigmoid(theta_i - theta_j) with
    ``choix.ilsr_pairwise`` (iterative Luce spectral ranking, Maystre & Grossglauser 2015), regularised with
    ``alpha``: choix adds alpha to every transition rate of the LSR Markov chain, which amounts to alpha (w_i + w_j)
    virtual wins each way for every pair (w the strengths, mean 1): about 2 alpha = 0.6 at the default 0.3, i.e. a
    virtual tie or so per model pair. It keeps a model with no wins (or a group never compared with the rest) finite
    and early fits modest, and is negligible once pairs have tens of comparisons (alpha 0.01 let early fits blow
    gaps up to 3-5 logits, which then looked settled to active selection; 0.1 and 1.0 were worse than 0.3 in the
    benchmark). theta is centred (mean 0). Uncertainty (``uncertainty=``):

    - ``"bootstrap"`` (default): the nonparametric bootstrap (Efron 1979): resample the comparisons with
      replacement ``bootstrap`` times and refit each; the refits run choix's ILSR iteration, vectorised over the
      replicates on count matrices (a test checks it equals choix on the same data).
    - ``"laplace"``: the Laplace approximation at theta: the inverse of the Fisher information
      sum over compared pairs of n_ij p_ij (1 - p_ij) (e_i - e_j)(e_i - e_j)^T plus alpha I (a N(0, 1/alpha) prior on
      each theta, alpha reused as its precision), centred like theta. Deterministic, no refits, and smooth where the
      bootstrap is not: with few comparisons a pair won every time is won in every resample, so its bootstrap
      variance is ~0 exactly where the estimate is least trustworthy. Active selection does about as well with it
      as with the bootstrap (benchmark: 0.68x vs 0.63x of random by mean, 0.65x vs 0.67x by median) at a fraction
      of the cost.

    The result is a dict ``{model: (theta, std)}`` that also carries the covariance (``BTEstimates``). A model in
    no comparison gets std = inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import choix
import numpy as np
from scipy.special import expit, ndtr, owens_t

BT_ALPHA = 0.3
Acquisition = Literal["order", "ranking", "variance", "kendall", "kg"]
ACQUISITIONS: tuple[str, ...] = ("order", "ranking", "variance", "kendall", "kg")


def acquisition_scores(
    mu: np.ndarray, cov: np.ndarray, pairs: Sequence[tuple[int, int]], kind: Acquisition = "order"
) -> np.ndarray:
    """Informativeness of one more comparison of each model pair, given means ``mu`` and covariance ``cov`` of the
    models' BT parameters (formulas in the module doc)."""
    pi, pj = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    d = mu[pi] - mu[pj]
    x = np.zeros((len(mu), len(pi)))  # column k: e_a - e_b of pair k
    x[pi, np.arange(len(pi))], x[pj, np.arange(len(pi))] = 1.0, -1.0
    u = x.T @ cov @ x  # u[q, k] = cov(d_q, d_k)
    v = np.maximum(np.diag(u), 1e-12)
    p = expit(d)
    info = p * (1 - p)
    if kind == "variance":
        return info * v
    if kind == "order":
        return info * v * 2 * ndtr(-np.abs(d) / np.sqrt(v))
    if kind == "kendall":  # after one outcome of pair k (Fisher information info_k; Kalman update) var(d_q) drops to:
        v_after = np.maximum(v[:, None] - info[None, :] * u**2 / (1 + info[None, :] * v[None, :]), 1e-12)
        return (ndtr(-np.abs(d) / np.sqrt(v))[:, None] - ndtr(-np.abs(d)[:, None] / np.sqrt(v_after))).sum(axis=0)
    if kind in ("kg", "ranking"):  # KG(*): the best per-comparison gain over horizons of H comparisons
        return _kg_star(d, u, v, info, "discordant" if kind == "kg" else "ranking")
    raise ValueError(f"unknown acquisition {kind!r}: {', '.join(ACQUISITIONS)}")


KG_HORIZONS = (1, 4, 16, 64)


def expected_misorder(d: np.ndarray, r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """E[Phi(-|D'| / sqrt(v - r))] for D' ~ N(d, r): the expected probability that a pair's order is wrong after new
    data that moves its posterior mean by N(0, r) and shrinks its variance from v to v - r (the preposterior).

    Closed form (no quadrature: the integrand has a kink at D' = 0 that slows Gauss–Hermite to ~1e-3). With W, Z
    independent standard normals, s^2 = v - r, X = d + sqrt(r) Z: E[Phi(-X/s); X > 0] = P(sW + X <= 0, X > 0) and
    E[Phi(X/s); X < 0] = P(sW - X <= 0, X < 0); both are bivariate normal probabilities, and with a = d/sqrt(v),
    b = d/sqrt(r), rho = sqrt(r/v) they add up to 1 - Phi2(a, b; rho) - Phi2(-a, -b; rho). Phi2 by Owen's T
    (a and b share d's sign, so the hk < 0 correction never applies): Phi2(h, k; rho) = (Phi(h) + Phi(k))/2
    - T(h, (k - rho h)/(h sqrt(1 - rho^2))) - T(k, (h - rho k)/(k sqrt(1 - rho^2))); d = 0 gives
    1/2 - asin(rho)/pi, r = 0 gives Phi(-|d|/sqrt(v)). Tested against numerical integration."""
    d, r, v = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (d, r, v)))
    sig = np.sqrt(np.maximum(r, 0.0))
    rho = np.clip(sig / np.sqrt(v), 0.0, 1 - 1e-9)
    q = np.sqrt(1 - rho**2)
    dd = np.where(d == 0, 1.0, d)
    a, b = dd / np.sqrt(v), dd / np.maximum(sig, 1e-300)

    def phi2(h: np.ndarray, k: np.ndarray) -> np.ndarray:
        return 0.5 * (ndtr(h) + ndtr(k)) - owens_t(h, (k - rho * h) / (h * q)) - owens_t(k, (h - rho * k) / (k * q))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = 1 - phi2(a, b) - phi2(-a, -b)
    out = np.where(d == 0, 0.5 - np.arcsin(rho) / np.pi, out)
    return np.where(sig < 1e-12, ndtr(-np.abs(d) / np.sqrt(v)), out)


def _kg_star(
    d: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    info: np.ndarray,
    objective: Literal["discordant", "ranking"] = "discordant",
) -> np.ndarray:
    """Knowledge gradient with a horizon (KG(*), Frazier & Powell 2010): for each model pair k and horizon H, the
    expected gain in the objective if pair k were compared H more times, divided by H; the score is the best over
    ``KG_HORIZONS``.

    After H outcomes of pair k (Fisher information H*info_k on d_k; the Kalman update of the Gaussian posterior)
    var(d_q) drops by r_qk = H info_k u_qk^2 / (1 + H info_k v_k) and the posterior mean of d_q moves by a draw
    from N(0, r_qk), so the expected misorder probability of pair q afterwards is ``expected_misorder(d_q, r_qk,
    v_q)`` (pi_q' below; pi_q = Phi(-|d_q|/sqrt(v_q)) now). H = 1 is the ``kendall`` lookahead; but the value of
    information is not concave in the number of comparisons — one outcome rarely flips an order, several can — so a
    one-step lookahead undervalues exactly the pairs that need a few comparisons; KG(*) values a pair at its best
    average over a horizon. ``objective``:

    - ``"discordant"`` (acquisition ``kg``): the drop of the expected number of discordant pairs, sum_q pi_q - pi_q'.
    - ``"ranking"`` (acquisition ``ranking``): the relative gain in the probability that every pair is in the right
      order, prod_q (1 - pi_q') / prod_q (1 - pi_q) - 1. Two approximations, both stated: the misorder events are
      treated as independent (a ranking is transitive, so they are not), and each factor is replaced by its own
      preposterior expectation (one outcome moves all the d_q together). A test measures the second against a Monte
      Carlo of the joint update: within 20 % for the best pair of its case, but off by up to 10x for pairs of small
      gain, and the joint version picks another pair there; an exact joint version (quadrature over the one
      innovation) was not better in the benchmark. To first order the gain is sum_q (pi_q - pi_q') / (1 - pi_q):
      ``kg``'s drops, each weighted by 1 / (1 - pi_q), which runs from 1 (a settled pair) to 2 (a coin toss). So it
      leans harder on the pairs whose order is still open, where ``kg`` counts a drop the same wherever it happens.
      Dividing by the current P, common to all candidates, changes no choice and keeps the scores O(1), not O(P).
      Measured against the others in ``benchmarks/pairs_active.py`` (numbers in its doc)."""
    base = ndtr(-np.abs(d) / np.sqrt(v))
    log_base = np.log1p(-base).sum()
    best = np.full(len(d), -np.inf)
    for h in KG_HORIZONS:
        g = h * info
        r = np.minimum(g[None, :] * u**2 / (1 + g[None, :] * v[None, :]), v[:, None] * (1 - 1e-9))  # (Q, K)
        after = expected_misorder(d[:, None], r, v[:, None])
        if objective == "ranking":
            gain = np.expm1(np.log1p(-np.minimum(after, 0.5)).sum(axis=0) - log_base)
        else:
            gain = (base[:, None] - after).sum(axis=0)
        best = np.maximum(best, gain / h)
    return best


# ---------------------------------------------------------------------------------------------------- Bradley–Terry


def _ilsr_counts(wins: np.ndarray, alpha: float, max_iter: int = 100, tol: float = 1e-8) -> np.ndarray:
    """choix's I-LSR on a batch of count matrices ``wins[b, w, l]`` (w beat l), vectorised over b: the same chain
    (alpha + count / (weight_w + weight_l) on the rate l -> w), the same weights normalisation and stopping rule."""
    n_rep, n, _ = wins.shape
    params = np.zeros((n_rep, n))
    for _ in range(max_iter):
        w = np.exp(params - params.mean(axis=1, keepdims=True))
        w *= n / w.sum(axis=1, keepdims=True)
        rate = alpha + np.swapaxes(wins, 1, 2) / (w[:, :, None] + w[:, None, :])  # [b, l, w]
        gen = rate.copy()
        gen[:, np.arange(n), np.arange(n)] -= rate.sum(axis=2)  # choix: chain -= diag(chain.sum(axis=1))
        a = np.swapaxes(gen, 1, 2).copy()  # pi @ gen = 0  <=>  gen.T @ pi = 0; replace one equation by sum(pi) = 1
        a[:, -1, :] = 1.0
        rhs = np.zeros((n_rep, n, 1))
        rhs[:, -1] = 1.0
        pi = np.linalg.solve(a, rhs)[..., 0]
        new = np.log(np.maximum(pi, 1e-300))
        new -= new.mean(axis=1, keepdims=True)
        done = np.abs(new - params).sum(axis=1).max() <= tol * n
        params = new
        if done:
            break
    return params


class BTEstimates(dict):
    """``fit_bradley_terry``'s answer: a plain ``{model: (theta, std)}`` dict that also carries the ``covariance`` of
    theta (bootstrap or Laplace; rows/columns in ``models`` order; None when not computed). ``build_pairs`` uses it
    for the variance of a difference, var(theta_a - theta_b) = C_aa + C_bb - 2 C_ab, where a bare dict only gives
    std_a^2 + std_b^2 (models compared mostly with each other are far more certain about their difference than
    about their place on the scale)."""

    def __init__(self, items: dict[str, tuple[float, float]], models: list[str], covariance: np.ndarray | None):
        super().__init__(items)
        self.models = models
        self.covariance = covariance


def _laplace_covariance(counts: np.ndarray, theta: np.ndarray, alpha: float) -> np.ndarray:
    """Inverse of the Fisher information at theta plus a N(0, 1/alpha) prior, centred like theta (module doc)."""
    n = len(theta)
    games = counts + counts.T
    p = expit(theta[:, None] - theta[None, :])
    w = games * p * (1 - p)
    precision = np.diag(w.sum(axis=1)) - w + alpha * np.eye(n)
    centre = np.eye(n) - 1.0 / n
    return centre @ np.linalg.inv(precision) @ centre


def fit_bradley_terry(
    comparisons: Sequence[tuple[str, str]],
    models: Sequence[str],
    bootstrap: int = 200,
    seed: int = 0,
    alpha: float = BT_ALPHA,
    uncertainty: Literal["bootstrap", "laplace"] = "bootstrap",
) -> BTEstimates:
    """(winner, loser) answers -> {model: (theta, std)}; theta = ``choix.ilsr_pairwise(len(models), data,
    alpha=alpha)`` with data = (index of winner, index of loser) in ``models`` order; std (and the covariance) from
    ``bootstrap`` resamples, or from the Laplace approximation (``uncertainty="laplace"``; ``bootstrap`` unused). std
    is nan when ``bootstrap < 2`` and inf for a model in no comparison (module doc)."""
    models = list(models)
    index = {m: k for k, m in enumerate(models)}
    if len(index) != len(models):
        raise ValueError("models must be distinct")
    if alpha <= 0:
        raise ValueError("alpha must be > 0 (without it a model with no wins has no finite estimate)")
    if unknown := {m for c in comparisons for m in c} - index.keys():
        raise ValueError(f"comparisons name models not in the list: {sorted(unknown)}")
    data = [(index[w], index[lo]) for w, lo in comparisons]
    if any(w == lo for w, lo in data):
        raise ValueError("a comparison of a model with itself")
    n = len(models)
    if not data:
        return BTEstimates({m: (0.0, math.inf) for m in models}, models, None)
    theta = choix.ilsr_pairwise(n, data, alpha=alpha)
    counts = np.zeros((n, n))
    np.add.at(counts, tuple(np.array(data).T), 1.0)
    cov = None
    if uncertainty == "laplace":
        cov = _laplace_covariance(counts, theta, alpha)
    elif uncertainty != "bootstrap":
        raise ValueError(f"unknown uncertainty {uncertainty!r}: bootstrap or laplace")
    elif bootstrap > 1:
        rng = np.random.default_rng(seed)
        reps = rng.multinomial(len(data), counts.ravel() / len(data), size=bootstrap).reshape(bootstrap, n, n)
        cov = np.atleast_2d(np.cov(_ilsr_counts(reps.astype(float), alpha), rowvar=False))
    std = np.full(n, np.nan) if cov is None else np.sqrt(np.maximum(np.diag(cov), 0.0))
    std[(counts.sum(axis=0) + counts.sum(axis=1)) == 0] = math.inf
    return BTEstimates({m: (float(theta[k]), float(std[k])) for k, m in enumerate(models)}, models, cov)


# ---------------------------------------------------------------------------------------------------- ranking.json


def covariance_record(est: BTEstimates) -> dict[str, Any]:
    """A fit's covariance as ``labelling/ranking.json`` stores it per criterion: ``{"models": [...], "matrix":
    [[...]] | None}`` (None when not computed). ``estimates_from_ranking`` reads it back."""
    return {"models": est.models, "matrix": None if est.covariance is None else est.covariance.tolist()}


def estimates_from_ranking(doc: Mapping[str, Any], criteria: Sequence[str] | None = None) -> list[BTEstimates]:
    """Active-selection estimates from ``labelling/ranking.json`` (what ``sr4k aggregate`` writes): per criterion
    the rows' theta and std plus the covariance (``covariance_record``) when the file carries it (older files:
    diagonal, with the weaker plain-dict behaviour described in ``pairs.build``' module doc). ``criteria``: which
    ones (default: all in the file). A model with std null (never compared; JSON has no inf) gets std inf, which
    the pair builder treats as unknown."""
    rankings = doc.get("rankings")
    if not isinstance(rankings, Mapping) or not rankings:
        raise ValueError("not a ranking file: no 'rankings' (expected labelling/ranking.json from `sr4k aggregate`)")
    want = list(rankings) if criteria is None else list(criteria)
    if unknown := [c for c in want if c not in rankings]:
        raise ValueError(f"criteria {unknown} not in the ranking file (it has {sorted(rankings)})")
    out = []
    for c in want:
        rows = {
            r["model"]: (float(r["theta"]), math.inf if r["std"] is None else float(r["std"])) for r in rankings[c]
        }
        cov = (doc.get("covariance") or {}).get(c) or {}
        models, matrix = cov.get("models"), cov.get("matrix")
        if models and matrix is not None:
            out.append(BTEstimates(rows, list(models), np.asarray(matrix, dtype=float)))
        else:
            out.append(BTEstimates(rows, list(rows), None))
    return out
