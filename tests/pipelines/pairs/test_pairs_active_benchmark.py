"""benchmarks/pairs_active.py runs end to end on a tiny setting, and its interval is the paired bootstrap."""

import numpy as np
import pytest
from benchfixtures import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("pairs_active")


def test_ratio_interval_resamples_worlds_in_pairs(bench):
    # active is exactly half of random in every world: every resample gives 0.5, whatever the spread of worlds
    random = [100, 400, 1600, 3000, None]
    active = [50, 200, 800, 1500, 2000]
    assert bench.ratio_interval(active, random, budget=4000) == pytest.approx((0.5, 0.5))
    lo, hi = bench.ratio_interval([10, 4000], [40, 40], budget=4000)
    assert lo < 1 < hi  # one world where active wins, one where it loses badly: the interval says "unclear"


def test_tiny_run_prints_ratios_and_the_gap_split(bench, capsys):
    bench.main(
        [
            "--seeds",
            "2",
            "--models",
            "4",
            "--lrs",
            "30",
            "--budget",
            "200",
            "--batch",
            "20",
            "--uncertainty",
            "laplace",
            "--acquisition",
            "ranking",
            "order",
        ]
    )
    out = capsys.readouterr().out
    assert out.count("seed ") == 2
    for m in ("active-ranking-laplace", "active-order-laplace"):
        assert f"ratio {m} / random:" in out
    assert "95 % interval over worlds" in out and "by the second-smallest quality gap" in out
    held = [line for line in out.splitlines() if "ratio active-ranking-laplace / random:" in line and "(means" in line]
    assert len(held) == 2 and all(np.isfinite(float(x.split("random: ")[1].split()[0])) for x in held)
    assert "fixed budgets" in out and "mean tau >= 0.90" in out and out.count("mean tau  ") == 3
