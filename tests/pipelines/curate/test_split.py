import pytest

from pipelines.curate.split import holdout_split


def test_holdout_is_deterministic_and_close_to_the_rate():
    keys = [f"{i:024x}" for i in range(20000)]
    held = [k for k in keys if holdout_split(k, 10)]
    assert held == [k for k in keys if holdout_split(k, 10)]
    assert 140 <= len(held) <= 260  # 1% of 20000 = 200, ±4.3 sd
    assert set(held) <= {k for k in keys if holdout_split(k, 50)}  # a larger rate only adds keys


@pytest.mark.parametrize("permille,expect", [(0, False), (1000, True)])
def test_extremes(permille, expect):
    assert all(holdout_split(f"k{i}", permille) is expect for i in range(100))


def test_rate_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"0\.\.1000"):
        holdout_split("k", 1001)
