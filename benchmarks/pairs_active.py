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


def run(world: World, method: str, args: argparse.Namespace, seed: int) -> tuple[int | None, int | None]:
    """Comparisons at which tau >= args.tau was first reached, and at which it was reached and then held for
    ``args.hold`` consecutive checks (None = not within the budget)."""
    cands = [Candidate(lr, m, "v1", f"{lr}/{m}.png") for lr in world.lrs for m in world.models]
    rng_sel, rng_ans = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    asked: set = set()
    comps: list[tuple[str, str]] = []
    est, first, streak_start, streak = None, None, None, 0
    active = method != "random"
    while len(comps) < args.budget:
        if active:
            acq = method.split("-")[1]
            batch = _active_batch(world, cands, asked, est, args.batch, seed + len(comps), acq)
        else:
            batch = _random_batch(world, asked, args.batch, rng_sel)
        for lr, a, b in batch:
            win = world.answer(lr, a, b, rng_ans)
            comps.append((world.models[a], world.models[b]) if win else (world.models[b], world.models[a]))
        boot, unc = (args.bootstrap, method.rsplit("-", 1)[1]) if active else (0, "bootstrap")
        est = fit_bradley_terry(comps, world.models, boot, seed=len(comps), alpha=args.alpha, uncertainty=unc)
        ok = kendalltau([est[m][0] for m in world.models], world.quality).statistic >= args.tau
        first = first or (len(comps) if ok else None)
        streak_start, streak = (streak_start or len(comps), streak + 1) if ok else (None, 0)
        if streak >= args.hold:
            return first, streak_start
    return first, None


def summarise(values: list[int | None], budget: int) -> tuple[float, float, str]:
    """Mean and median with runs that never got there counted as the budget (a lower bound on their cost)."""
    x = [budget if v is None else v for v in values]
    censored = sum(v is None for v in values)
    note = f"   ({censored} not within {budget}: counted as {budget})" if censored else ""
    return statistics.mean(x), statistics.median(x), note


def report(title: str, results: dict[str, list[int | None]], budget: int) -> None:
    print(f"\n{title}")
    stats = {m: summarise(v, budget) for m, v in results.items()}
    for m, (mean, median, note) in stats.items():
        print(f"  {m:24s} mean {mean:7.1f}   median {median:6.0f}{note}")
    base_mean, base_median, _ = stats["random"]
    for m, (mean, median, _) in stats.items():
        if m != "random":
            print(f"  ratio {m} / random: {mean / base_mean:.2f} (means)   {median / base_median:.2f} (medians)")


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
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--hold", type=int, default=5, help="checks (batches) tau must stay >= --tau for 'held'")
    ap.add_argument("--acquisition", nargs="+", default=["order"], choices=["order", "variance", "kendall"])
    ap.add_argument("--uncertainty", nargs="+", default=["bootstrap", "laplace"], choices=["bootstrap", "laplace"])
    args = ap.parse_args(argv)
    methods = ["random"] + [f"active-{a}-{u}" for a in args.acquisition for u in args.uncertainty]
    first: dict[str, list[int | None]] = {m: [] for m in methods}
    held: dict[str, list[int | None]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    last = args.seed0 + args.seeds - 1
    print(f"{args.models} models, {args.lrs} LRs, batch {args.batch}, noise {args.noise}, lr-sigma {args.lr_sigma}, "
          f"alpha {args.alpha}, tau >= {args.tau} (held {args.hold} checks), seeds {args.seed0}..{last}, "
          f"budget {args.budget}")  # fmt: skip
    for seed in range(args.seed0, args.seed0 + args.seeds):
        world = make_world(seed, args.models, args.lrs, args.lr_sigma, args.noise)
        row = []
        for m in methods:
            f, h = run(world, m, args, seed)
            first[m].append(f)
            held[m].append(h)
            row.append(f"{m} {f or '-':>5} / {h or '-':>5}")
        gaps = np.sort(np.diff(np.sort(world.quality)))
        print(
            f"seed {seed:3d}  two smallest gaps {gaps[0]:.2f} {gaps[1]:.2f}   first / held:  " + "   ".join(row),
            flush=True,
        )
    report(f"comparisons until tau >= {args.tau} is first reached:", first, args.budget)
    report(f"comparisons until tau >= {args.tau} is reached and held for {args.hold} checks:", held, args.budget)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
