"""Active vs random pair selection: comparisons needed until the Bradley–Terry ranking of the models is right.

Simulation
    ``--models`` SR models with hidden true quality q_m ~ N(0, 1) (seeded), ``--lrs`` LR images; on LR l model m's
    quality is q_m + s_lm with s_lm ~ N(0, ``--lr-sigma``) (some models suit some pictures). An annotator shown
    (a, b) on LR l prefers a with the Bradley–Terry probability sigmoid(q_a + s_la - q_b - s_lb); with probability
    ``--noise`` (epsilon) the answer is a coin flip instead (inattention). Every cell (LR, model pair) is asked at most
    once, as ``build_pairs`` guarantees.

Loop (per seed, per method, the same hidden world and the same answer-noise stream)
    In batches of ``--batch`` comparisons: select, answer, refit ``fit_bradley_terry`` (choix I-LSR, ``--bootstrap``
    replicates for the stds active needs), measure Kendall tau (``scipy.stats.kendalltau``) between the estimated
    and the true q. Methods:

    - ``random``: cells drawn uniformly without replacement (uniform over model pairs and LRs);
    - ``active-<acquisition>``: ``build_pairs(strategy="active", estimates=<current fit>, exclude=<asked>)``; the
      first batch, with no estimates yet, is the balanced cold start.

Metric
    *first*: the number of comparisons at which tau >= ``--tau`` (default 0.9) is first reached; for 8 models that
    means at most one discordant model pair out of 28. *settled*: the number after which tau stays >= ``--tau`` at
    every later check up to the budget (only with ``--settle``: runs must then go to the budget, ~4x slower). A run
    that never gets there counts as the budget and is reported as censored. Reported: mean and median over seeds,
    and the ratio active / random of the means (goal <= 0.6).

Run
    .venv/bin/python benchmarks/pairs_active.py                      # 12 seeds, 8 models, ~1-2 min
    .venv/bin/python benchmarks/pairs_active.py --acquisition variance misorder --seeds 20
    options: --seeds N --models M --lrs L --batch B --budget N --noise EPS --lr-sigma S --bootstrap R --tau T
             --acquisition {misorder,variance} ... --settle
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.pairs import BT_ALPHA, Candidate, build_pairs, fit_bradley_terry


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


def _active_batch(world: World, cands: list, asked: set, est: dict | None, n: int, seed: int, acq: str) -> list:
    exclude = [(world.lrs[lr], world.models[a], world.models[b]) for lr, a, b in asked]
    pairs, _ = build_pairs(cands, n, "active", seed=seed, min_distance=0, estimates=est, acquisition=acq,
                           exclude=exclude)  # fmt: skip
    li = {k: i for i, k in enumerate(world.lrs)}
    mi = {k: i for i, k in enumerate(world.models)}
    out = [(li[p.lr_key], mi[p.model_a], mi[p.model_b]) for p in pairs]
    asked.update(out)
    return out


def run(world: World, method: str, args: argparse.Namespace, seed: int) -> list[tuple[int, float]]:
    """(comparisons so far, tau) after every batch."""
    cands = [Candidate(lr, m, "v1", f"{lr}/{m}.png") for lr in world.lrs for m in world.models]
    rng_sel, rng_ans = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    asked: set = set()
    comps: list[tuple[str, str]] = []
    est, curve = None, []
    active = method != "random"
    while len(comps) < args.budget:
        if active:
            batch = _active_batch(world, cands, asked, est, args.batch, seed + len(comps), method.split("-", 1)[1])
        else:
            batch = _random_batch(world, asked, args.batch, rng_sel)
        for lr, a, b in batch:
            win = world.answer(lr, a, b, rng_ans)
            comps.append((world.models[a], world.models[b]) if win else (world.models[b], world.models[a]))
        boot = args.bootstrap if active else 0
        est = fit_bradley_terry(comps, world.models, bootstrap=boot, seed=len(comps), alpha=args.alpha)
        tau = kendalltau([est[m][0] for m in world.models], world.quality).statistic
        curve.append((len(comps), float(tau)))
        if tau >= args.tau and not args.settle:
            break
    return curve


def first_and_settled(curve: list[tuple[int, float]], tau: float, budget: int) -> tuple[int, int]:
    first = next((n for n, t in curve if t >= tau), budget)
    settled = budget
    for k in range(len(curve) - 1, -1, -1):
        if curve[k][1] < tau:
            break
        settled = curve[k][0]
    return first, settled


def summarise(name: str, values: list[int], budget: int) -> str:
    censored = sum(v >= budget for v in values)
    c = f", {censored} censored at {budget}" if censored else ""
    return f"mean {statistics.mean(values):7.1f}  median {statistics.median(values):6.0f}{c}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--lrs", type=int, default=300)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=4000)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--lr-sigma", type=float, default=0.3)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--alpha", type=float, default=BT_ALPHA, help="fit_bradley_terry's regularisation")
    ap.add_argument("--acquisition", nargs="+", default=["misorder"], choices=["misorder", "variance"])
    ap.add_argument("--settle", action="store_true", help="run to the budget and report 'settled' too")
    args = ap.parse_args(argv)
    methods = ["random"] + [f"active-{a}" for a in args.acquisition]
    first: dict[str, list[int]] = {m: [] for m in methods}
    settled: dict[str, list[int]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    print(f"{args.models} models, {args.lrs} LRs, batch {args.batch}, noise {args.noise}, lr-sigma {args.lr_sigma}, "
          f"tau >= {args.tau}, {args.seeds} seeds, budget {args.budget}")  # fmt: skip
    for seed in range(args.seeds):
        world = make_world(seed, args.models, args.lrs, args.lr_sigma, args.noise)
        row = []
        for m in methods:
            f, s = first_and_settled(run(world, m, args, seed), args.tau, args.budget)
            first[m].append(f)
            settled[m].append(s)
            row.append(f"{m} {f:5d}" + (f" / {s:5d}" if args.settle else ""))
        gaps = np.diff(np.sort(world.quality))
        print(f"seed {seed:3d}  min gap {gaps.min():.3f}  " + "   ".join(row), flush=True)
    print(f"\ncomparisons to first reach tau >= {args.tau}:")
    for m in methods:
        print(f"  {m:18s} {summarise(m, first[m], args.budget)}")
    base = statistics.mean(first["random"])
    for m in methods[1:]:
        print(f"  ratio {m} / random (means): {statistics.mean(first[m]) / base:.2f}   (medians: "
              f"{statistics.median(first[m]) / statistics.median(first['random']):.2f})")  # fmt: skip
    if args.settle:
        print(f"\ncomparisons after which tau stays >= {args.tau} (to the budget):")
        for m in methods:
            print(f"  {m:18s} {summarise(m, settled[m], args.budget)}")
        for m in methods[1:]:
            ratio = statistics.mean(settled[m]) / statistics.mean(settled["random"])
            print(f"  ratio {m} / random (means): {ratio:.2f}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
