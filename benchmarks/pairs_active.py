"""Active vs random pair selection: comparisons needed until the Bradley–Terry ranking of the models is right.

Simulation
    ``--models`` SR models with hidden true quality q_m ~ N(0, 1) (seeded), ``--lrs`` LR images; on LR l model m's
    quality is q_m + s_lm with s_lm ~ N(0, ``--lr-sigma``) (some models suit some pictures). An annotator shown
    (a, b) on LR l prefers a with the Bradley–Terry probability sigmoid(q_a + s_la - q_b - s_lb); with probability
    ``--noise`` (epsilon) the answer is a coin flip instead (inattention). Every cell (LR, model pair) is asked at most
    once, as ``build_pairs`` guarantees.

Loop (per seed, per method, the same hidden world and the same answer-noise stream)
    In batches of ``--batch`` comparisons: select, answer, refit ``fit_bradley_terry`` (choix I-LSR, alpha 0.3;
    ``--bootstrap`` replicates or the Laplace approximation for the uncertainty active needs), measure Kendall tau
    (``scipy.stats.kendalltau``) between the estimated and the true q. Methods:

    - ``random``: cells drawn uniformly without replacement (uniform over model pairs and LRs);
    - ``active-<acquisition>-<uncertainty>``: ``build_pairs(strategy="active", estimates=<current fit>,
      exclude=<asked>)``; the first batch, with no estimates yet, is the balanced cold start.

Metrics: two readings of "comparisons needed to reach Kendall tau >= 0.9" (8 models: at most one of the 28 model
pairs in the wrong order)
    *fixed budgets* (the headline; ``--metric curve``): every run goes to the budget and records tau at every check
    (each ``--batch`` comparisons). Over the worlds, at each budget n: the mean tau, and the share of worlds at tau >=
    0.9. The comparisons needed are the n from which the mean tau stays >= 0.9 (the learning-curve reading: ranking
    quality averaged over runs against the number of comparisons, the common way to compare selection rules), and the n
    from which 50 % and 80 % of the worlds are at tau >= 0.9. This is what a user gets who fixes a labelling budget
    in advance, which is how rounds are planned. Ratios active / random come with a 95 % paired bootstrap interval
    over worlds (``paired_bootstrap``; a resample where random never gets there counts the budget).

    *per-world stopping* (``--metric held``; the earlier headline): *first* = comparisons until tau >= 0.9 is first
    reached, *held* = until it is reached and then holds for ``--hold`` (5) checks, counted from the start of that
    stretch; a run that never gets there counts as the budget. Mean and median over worlds. Each run here is stopped
    by looking at the true ranking, which no user can do, and the mean is dominated by luck: in about one world in
    five two model pairs are near-ties (second-smallest quality gap < 0.05 logit) that no selection orders within
    the budget, and random selection, which touches those pairs rarely, keeps whatever order its first few answers
    gave, so a lucky draw "holds" at a few hundred comparisons; active selection, asking them often, moves their
    estimate across zero again and again. The report splits the summed cost by that gap.

Results (2-core CPU box; 8 models, 300 LRs, batch 20, epsilon 0.1, lr-sigma 0.3, Laplace uncertainty, budget 3000),
on worlds never used while designing the methods (seeds 200..299 and 300..499):

    =================================  ======================  ======================  ====================
    seeds, method                      mean tau >= 0.9         80 % of worlds          held (mean / median)
    =================================  ======================  ======================  ====================
    200..299  random                   860                     2840                    814 / 390
    200..299  active ``order``         440: 0.51 (0.36-0.78)   1100: 0.39 (0.24-0.88)  0.64 / 0.87
    200..299  active ``ranking``       460: 0.53 (0.35-0.71)   860: 0.30 (0.27-0.67)   0.74 / 0.92
    300..499  random                   960                     2400                    834 / 570
    300..499  active ``order``         480: 0.50 (0.38-0.64)   1180: 0.49 (0.34-1.03)  0.71 / 0.63
    =================================  ======================  ======================  ====================

    (comparisons, then ratio to random with its 95 % interval over worlds; in the held column random's mean / median
    comparisons and the active ratios of mean / median). Mean tau at 200 / 500 / 1000 / 2000
    comparisons, seeds 200..299: random 0.790 / 0.873 / 0.908 / 0.932, ``order`` 0.837 / 0.904 / 0.935 / 0.949,
    ``ranking`` 0.831 / 0.911 / 0.937 / 0.950. Seeds 300..499:
    random 0.775 / 0.857 / 0.905 / 0.933, ``order`` 0.828 / 0.902 / 0.934 / 0.948. 50 % of worlds at tau >= 0.9:
    ``order`` 0.60x (300..499) and 0.68x (200..299), ``ranking`` 0.60x (200..299).

    So with a fixed budget active selection needs half the comparisons of random selection to reach tau 0.9 on
    average (0.51x and 0.50x on two fresh sets of worlds; goal <= 0.6), and 0.3-0.5x to bring 80 % of the worlds
    there. By per-world stopping the ratio is 0.64-0.74 by mean and 0.63-0.92 by median: it does not reach 0.6,
    for the reason above. ``order`` and
    ``ranking`` are within each other's intervals; ``order`` stays the default (its score of all pairs costs
    0.09 ms against 3.2 ms).

    What was tried before (per-world stopping, seeds 0..199; held ratios mean / median):

    - marginal stds only (a plain ``{model: (mean, std)}``, var(d) = std_a^2 + std_b^2): ~1.9x random. Early fits
      with alpha 0.01 blow gaps up to 3-5 logits; the models' places on the scale stay uncertain, so the marginal
      stds stay large and the same pair keeps being chosen. alpha 0.3 and the *covariance* of theta fixed that;
    - ``order`` 0.63 / 0.67 (bootstrap) and 0.68 / 0.65 (Laplace); ``kendall`` 0.68 / 0.96; ``variance`` 0.95 /
      1.00; ``kg`` 0.68 / 0.65 (Laplace); neighbours-only ``variance`` 0.84; Thompson sampling 0.90-0.99; 10-25 % of
      each batch random 0.60-0.91; forced exploration (``--min-per-pair 3``) 0.59 / 0.63, but 0.77 / 0.76 on
      seeds 200..399 against 0.67 / 0.76 without (kept as an option, off by default);
    - ``ranking`` (KG(*) on P(whole ranking right)): 0.54 / 0.52 on seeds 0..199 in a stripped-down copy of the
      loop, 0.65 in this loop on seeds 0..108, 0.74 / 0.92 on seeds 200..299 (table): each 40-200-world win shrank
      on fresh worlds. The 95 % interval of a 100-world mean ratio is about +-0.2 wide, which is why the table
      gives it;
    - in the stripped-down loop, on 26-85 worlds each: a Gaussian-prior MAP fit instead of choix's alpha, an exact
      joint preposterior for ``ranking`` (quadrature over the one innovation that moves every d_q), 2000 LRs
      instead of 300: none better. An oracle that knows the true order and spends every comparison on neighbours in
      it, weighted by 1, 1/gap or 1/gap^2: 1.45-1.6x random (40 worlds). Not pinned down why; note that a chain
      of neighbours gives each neighbour difference no more information than random's complete design does (var
      7 / (w n) either way for 8 models), and leaves all other differences to the fit's prior.

Run
    .venv/bin/python benchmarks/pairs_active.py                      # 40 worlds, random vs order, ~4 min (2 cores)
    .venv/bin/python benchmarks/pairs_active.py --seeds 200 --seed0 300 --budget 3000     # the table, ~11 min
    .venv/bin/python benchmarks/pairs_active.py --acquisition order ranking kg --uncertainty laplace bootstrap
    .venv/bin/python benchmarks/pairs_active.py --metric held --noise 0.2 --models 10     # per-world stopping only
    options: --seeds N --seed0 S --models M --lrs L --batch B --budget N --noise EPS --lr-sigma S --bootstrap R
             --alpha A --tau T --hold K --min-per-pair K --metric {both,curve,held} --jobs J
             --acquisition {order,ranking,variance,kendall,kg}... --uncertainty {laplace,bootstrap}...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.pairs.bradley_terry import ACQUISITIONS, BT_ALPHA, fit_bradley_terry
from pipelines.pairs.build import Candidate, build_pairs


@dataclass(slots=True)
class World:
    models: list[str]
    lrs: list[str]
    quality: np.ndarray  # (M,)
    shift: np.ndarray  # (L, M)
    noise: float

    def answer(self, lr: int, a: int, b: int, rng: np.random.Generator) -> bool:
        """True when a wins."""
        if rng.random() < self.noise:
            return bool(rng.random() < 0.5)
        d = self.quality[a] + self.shift[lr, a] - self.quality[b] - self.shift[lr, b]
        return bool(rng.random() < expit(d))


def make_world(seed: int, n_models: int, n_lrs: int, lr_sigma: float, noise: float) -> World:
    rng = np.random.default_rng([seed, 7])
    return World(
        [f"m{k}" for k in range(n_models)],
        [f"lr{k:04d}" for k in range(n_lrs)],
        rng.normal(0.0, 1.0, n_models),
        rng.normal(0.0, lr_sigma, (n_lrs, n_models)),
        noise,
    )


def _random_batch(world: World, asked: set, n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    m, out = len(world.models), []
    while len(out) < n:
        lr, a, b = int(rng.integers(len(world.lrs))), *sorted(rng.choice(m, 2, replace=False).tolist())
        if (lr, a, b) not in asked:
            asked.add((lr, a, b))
            out.append((lr, a, b))
    return out


def _active_batch(
    world: World, cands: list, asked: set, est: dict | None, n: int, seed: int, acq: str, warmup: int = 0
) -> list:
    exclude = [(world.lrs[lr], world.models[a], world.models[b]) for lr, a, b in asked]
    pairs, _ = build_pairs(
        cands,
        n,
        "active",
        seed=seed,
        min_distance=0,
        estimates=est,
        acquisition=acq,
        exclude=exclude,
        min_per_pair=warmup,
    )
    li = {k: i for i, k in enumerate(world.lrs)}
    mi = {k: i for i, k in enumerate(world.models)}
    out = [(li[p.lr_key], mi[p.model_a], mi[p.model_b]) for p in pairs]
    asked.update(out)
    return out


def run(world: World, method: str, args: argparse.Namespace, seed: int) -> tuple[int | None, int | None, list[float]]:
    """Comparisons at which tau >= args.tau was first reached, and at which it was reached and then held for
    ``args.hold`` consecutive checks (None = not within the budget), and Kendall tau at every check. With the curve
    metric (``--metric curve|both``) every run goes to the budget; ``held`` alone stops once it holds."""
    cands = [Candidate(lr, m, "v1", f"{lr}/{m}.png") for lr in world.lrs for m in world.models]
    rng_sel, rng_ans = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    asked: set = set()
    comps: list[tuple[str, str]] = []
    est, first, held, streak_start, streak = None, None, None, None, 0
    taus: list[float] = []
    active = method != "random"
    to_budget = args.metric != "held"
    while len(comps) < args.budget:
        n = min(args.batch, args.budget - len(comps))
        if active:
            acq = method.split("-")[1]
            batch = _active_batch(world, cands, asked, est, n, seed + len(comps), acq, args.min_per_pair)
        else:
            batch = _random_batch(world, asked, n, rng_sel)
        for lr, a, b in batch:
            win = world.answer(lr, a, b, rng_ans)
            comps.append((world.models[a], world.models[b]) if win else (world.models[b], world.models[a]))
        boot, unc = (args.bootstrap, method.rsplit("-", 1)[1]) if active else (0, "bootstrap")
        est = fit_bradley_terry(comps, world.models, boot, seed=len(comps), alpha=args.alpha, uncertainty=unc)
        taus.append(float(kendalltau([est[m][0] for m in world.models], world.quality).statistic))
        ok = taus[-1] >= args.tau
        first = first or (len(comps) if ok else None)
        streak_start, streak = (streak_start or len(comps), streak + 1) if ok else (None, 0)
        if streak >= args.hold and held is None:
            held = streak_start
            if not to_budget:
                break
    return first, held, taus


def settled(ok: np.ndarray, batch: int) -> int | None:
    """Comparisons from which ``ok`` (one flag per check, every ``batch`` comparisons) is true to the end; None if
    it is false at the last check."""
    if not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return int((bad[-1] + 2 if len(bad) else 1) * batch)


def curve_report(taus: dict[str, np.ndarray], args: argparse.Namespace, n_boot: int = 1000) -> None:
    """Fixed budgets: Kendall tau at every check, over all worlds (``taus[m]``: worlds x checks). The comparisons
    needed are where the mean tau over worlds reaches ``--tau`` and stays there (the learning-curve reading), and
    where the share of worlds with tau >= ``--tau`` reaches 50 % and 80 %; ratios against random with a paired
    bootstrap interval over worlds (a resample where random never gets there counts the budget: a lower bound)."""
    budget, batch, tau = args.budget, args.batch, args.tau
    print(f"\nfixed budgets (every run to {budget}; what a user who sets a budget gets):")
    measures = {
        f"mean tau >= {tau:.2f}": lambda t: t.mean(axis=0) >= tau,
        f"tau >= {tau} in 50 % of worlds": lambda t: (t >= tau).mean(axis=0) >= 0.5,
        f"tau >= {tau} in 80 % of worlds": lambda t: (t >= tau).mean(axis=0) >= 0.8,
    }
    n_worlds = len(taus["random"])
    for name, fn in measures.items():
        got = {m: settled(fn(t), batch) for m, t in taus.items()}
        cells = "   ".join(f"{m} {'>' + str(budget) if v is None else v}" for m, v in got.items())
        print(f"  {name:30s} {cells}")
        base = got["random"]
        for m, v in got.items():
            if m == "random":
                continue
            if v is None:
                print(f"    ratio {m} / random: not reached within the budget")
                continue

            def ratio(idx: np.ndarray, m: str = m, fn: Callable = fn) -> float:
                a, r = settled(fn(taus[m][idx]), batch), settled(fn(taus["random"][idx]), batch)
                return (a or budget) / (r or budget)

            lo, hi = paired_bootstrap(n_worlds, ratio, n_boot)
            bound = "<= " if base is None else ""
            ratio = f"{bound}{v / (base or budget):.2f}"
            print(f"    ratio {m} / random: {ratio} (95 % interval over worlds {lo:.2f}-{hi:.2f})")
    checks = [k for k in (10, 25, 50, 100, 200) if k * batch <= budget]
    for m, t in taus.items():
        row = "  ".join(f"{k * batch}: {t[:, k - 1].mean():.3f}" for k in checks)
        print(f"  mean tau  {m:24s} {row}")


def summarise(values: list[int | None], budget: int) -> tuple[float, float, str]:
    """Mean and median with runs that never got there counted as the budget (a lower bound on their cost)."""
    x = [budget if v is None else v for v in values]
    censored = sum(v is None for v in values)
    note = f"   ({censored} not within {budget}: counted as {budget})" if censored else ""
    return statistics.mean(x), statistics.median(x), note


def one_world(seed: int, methods: list[str], args: argparse.Namespace) -> tuple[int, dict, dict, list[float], dict]:
    """Every method on world ``seed``: (seed, first by method, held by method, sorted quality gaps, taus by
    method)."""
    world = make_world(seed, args.models, args.lrs, args.lr_sigma, args.noise)
    first, held, taus = {}, {}, {}
    for m in methods:
        first[m], held[m], taus[m] = run(world, m, args, seed)
    return seed, first, held, np.sort(np.diff(np.sort(world.quality))).tolist(), taus


def ratio_interval(
    active: list[int | None], random: list[int | None], budget: int, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the ratio of means, worlds resampled in pairs (active and random of one
    world stay together): how far the headline ratio can move with another draw of worlds of the same kind."""
    a = np.array([budget if v is None else v for v in active], dtype=float)
    r = np.array([budget if v is None else v for v in random], dtype=float)
    return paired_bootstrap(len(a), lambda idx: a[idx].mean() / r[idx].mean(), n_boot, seed)


def paired_bootstrap(
    n_worlds: int, stat: Callable[[np.ndarray], float], n_boot: int, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of ``stat(idx)`` over ``n_boot`` resamples ``idx`` of the worlds (with replacement);
    ``stat`` indexes every method's per-world results with the same ``idx``, so worlds stay paired."""
    boots = np.random.default_rng(seed).integers(0, n_worlds, (n_boot, n_worlds))
    values = [stat(idx) for idx in boots]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def report(title: str, results: dict[str, list[int | None]], budget: int, gap2: list[float] | None = None) -> None:
    """Means, medians, ratios against random with their bootstrap interval, and (``gap2``: each world's
    second-smallest quality gap) the same split by how hard the world is."""
    print(f"\n{title}")
    stats = {m: summarise(v, budget) for m, v in results.items()}
    for m, (mean, median, note) in stats.items():
        print(f"  {m:24s} mean {mean:7.1f}   median {median:6.0f}{note}")
    base_mean, base_median, _ = stats["random"]
    for m, (mean, median, _) in stats.items():
        if m != "random":
            lo, hi = ratio_interval(results[m], results["random"], budget)
            print(
                f"  ratio {m} / random: {mean / base_mean:.2f} (means; 95 % interval over worlds {lo:.2f}-{hi:.2f})"
                f"   {median / base_median:.2f} (medians)"
            )
    if gap2 is None or len(gap2) < 2:
        return
    print("  by the second-smallest quality gap (tau >= 0.9 tolerates one wrong pair, not two); summed comparisons:")
    for lo, hi in GAP_BANDS:
        sel = [k for k, g in enumerate(gap2) if lo <= g < hi]
        if not sel:
            continue
        sums = {m: sum(budget if v[k] is None else v[k] for k in sel) for m, v in results.items()}
        cells = "   ".join(
            f"{m} {n}" + ("" if m == "random" else f" ({n / sums['random']:.2f})") for m, n in sums.items()
        )
        print(f"    gap {lo:.2f}-{hi:.2f}  {len(sel):3d} worlds   {cells}")


GAP_BANDS = ((0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, float("inf")))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--seed0", type=int, default=0, help="first seed (worlds are seeds seed0 .. seed0+seeds-1)")
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--lrs", type=int, default=300)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=4000)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--lr-sigma", type=float, default=0.3)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=BT_ALPHA, help="fit_bradley_terry's regularisation")
    ap.add_argument(
        "--min-per-pair", type=int, default=0, help="active: forced exploration (build_pairs min_per_pair)"
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worlds run in parallel processes (results do not change)",
    )
    ap.add_argument(
        "--metric",
        choices=["both", "curve", "held"],
        default="both",
        help="curve: fixed budgets (every run to the budget); held: per-world stopping",
    )
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--hold", type=int, default=5, help="checks (batches) tau must stay >= --tau for 'held'")
    ap.add_argument("--acquisition", nargs="+", default=["order"], choices=ACQUISITIONS)
    ap.add_argument("--uncertainty", nargs="+", default=["laplace"], choices=["bootstrap", "laplace"])
    args = ap.parse_args(argv)
    cells = args.lrs * args.models * (args.models - 1) // 2
    if args.budget > cells:
        print(f"budget {args.budget} > {cells} distinct (LR, model pair) cells: budget lowered to {cells}")
        args.budget = cells
    methods = ["random"] + [f"active-{a}-{u}" for a in args.acquisition for u in args.uncertainty]
    first: dict[str, list[int | None]] = {m: [] for m in methods}
    held: dict[str, list[int | None]] = {m: [] for m in methods}
    gap2: list[float] = []
    taus: dict[str, list[list[float]]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    last = args.seed0 + args.seeds - 1
    print(
        f"{args.models} models, {args.lrs} LRs, batch {args.batch}, noise {args.noise}, lr-sigma {args.lr_sigma}, "
        f"alpha {args.alpha}, tau >= {args.tau} (held {args.hold} checks), seeds {args.seed0}..{last}, "
        f"budget {args.budget}"
    )
    seeds = range(args.seed0, args.seed0 + args.seeds)
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else nullcontext() as pool:
        results = (
            pool.map(one_world, seeds, repeat(methods), repeat(args))
            if pool
            else map(one_world, seeds, repeat(methods), repeat(args))
        )
        for seed, fs, hs, gaps, ts in results:  # in seed order, as each finishes
            for m in methods:
                first[m].append(fs[m])
                held[m].append(hs[m])
                taus[m].append(ts[m])
            gap2.append(gaps[1] if len(gaps) > 1 else float("inf"))
            row = "   ".join(f"{m} {fs[m] or '-':>5} / {hs[m] or '-':>5}" for m in methods)
            print(f"seed {seed:3d}  two smallest gaps {gaps[0]:.2f} {gaps[1]:.2f}   first / held:  {row}", flush=True)
    if args.metric != "curve":
        report(f"comparisons until tau >= {args.tau} is first reached:", first, args.budget)
        title = f"comparisons until tau >= {args.tau} is reached and held for {args.hold} checks:"
        report(title, held, args.budget, gap2)
    if args.metric != "held":
        curve_report({m: np.array(t) for m, t in taus.items()}, args)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
