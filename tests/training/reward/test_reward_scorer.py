"""RefRewardScorer: the round-robin tournament + Bradley–Terry against judges whose ground truth is known."""

import numpy as np
import pytest

from training.reward.scorer import RefRewardScorer, bradley_terry

QUALITY = {"consistency": np.array([0.2, 3.0, 1.0, -1.0, 2.0]), "naturalness": np.array([1.0, -2.0, 0.0, 3.0, 2.5])}


def oracle(lr, a, b):
    """Candidates are indices; the better one by each criterion wins, both orders."""
    return {c: "A" if q[a] > q[b] else "B" for c, q in QUALITY.items()}


def test_tournament_recovers_the_true_order():
    cands = list(range(5))
    for crit, q in QUALITY.items():
        s = RefRewardScorer(oracle, criteria_weights={crit: 1.0}).score(None, cands)
        assert list(np.argsort(-s)) == list(np.argsort(-q))
        assert abs(s.sum()) < 1e-9  # centred log-strengths
    both = RefRewardScorer(oracle).score(None, cands)
    assert both.shape == (5,) and both.dtype == np.float64
    wins = RefRewardScorer(oracle, method="wins").score(None, cands)
    # share of games won, averaged over the two criteria: candidate 4 is 2nd on both → wins 3 of 4 on each
    assert wins[4] == pytest.approx(0.75) and ((wins >= 0) & (wins <= 1)).all()


def test_both_orders_cancel_position_bias():
    calls = []

    def always_a(lr, a, b):
        calls.append((a, b))
        return {"consistency": "A", "naturalness": "A"}

    s = RefRewardScorer(always_a).score(None, [0, 1, 2, 3])
    np.testing.assert_allclose(s, 0.0, atol=1e-12)
    assert sorted(calls) == sorted((i, j) for i in range(4) for j in range(4) if i != j)  # 12 games, both orders

    def biased(lr, a, b):  # says "A" unless B is much better: the true order must still come out
        q = QUALITY["consistency"]
        v = "B" if q[b] > q[a] + 1.5 else "A"
        return {"consistency": v, "naturalness": v}

    s = RefRewardScorer(biased, criteria_weights={"consistency": 1}).score(None, [0, 1, 3])
    assert list(np.argsort(-s)) == [1, 0, 2]


def test_ties_and_malformed_answers():
    def tie_or_none(lr, a, b):
        return None if {a, b} == {0, 2} else {"consistency": "tie", "naturalness": "tie"}

    sc = RefRewardScorer(tie_or_none)
    s = sc.score(None, [0, 1, 2])
    np.testing.assert_allclose(s, 0.0, atol=1e-12)
    assert sc.last_stats.judged == 6 and sc.last_stats.malformed == 2
    assert sc.score(None, ["only"]).tolist() == [0.0]


def test_score_batch_batches_and_matches_score():
    class BatchJudge:
        def __init__(self):
            self.batches = []

        def judge_batch(self, triples):
            self.batches.append(len(triples))
            return [oracle(*t) for t in triples]

        def __call__(self, lr, a, b):
            raise AssertionError("the scorer must use judge_batch")

    j = BatchJudge()
    sc = RefRewardScorer(j, batch_size=8)
    out = sc.score_batch(["lr1", "lr2"], [[0, 1, 2, 3], [4, 0]])
    assert j.batches == [8, 6]  # 12 + 2 games in one stream
    np.testing.assert_allclose(out[0], RefRewardScorer(oracle).score(None, [0, 1, 2, 3]))
    np.testing.assert_allclose(out[1], RefRewardScorer(oracle).score(None, [4, 0]))
    with pytest.raises(ValueError, match="2 LR images for 1"):
        sc.score_batch(["a", "b"], [[0, 1]])


def test_bradley_terry_matches_choix():
    import choix

    wins = np.array([[0, 3, 1], [1, 0, 2], [0, 1, 0]], float)
    games = [(i, j) for i in range(3) for j in range(3) for _ in range(int(wins[i, j]))]
    ref = choix.opt_pairwise(3, games, alpha=1e-6)
    np.testing.assert_allclose(bradley_terry(wins, l2=1e-6), ref - ref.mean(), atol=1e-4)
    one_sided = bradley_terry(np.array([[0, 4.0], [0, 0]]))
    assert np.isfinite(one_sided).all() and one_sided[0] > 0  # the ridge keeps a clean sweep finite


def test_scorer_on_the_tiny_model(tiny_judge):
    from PIL import Image
    from refreward_fixtures import pair_images

    lr, a, b = pair_images(0)
    sc = RefRewardScorer.from_checkpoint(tiny_judge, device="cpu", max_new_tokens=24, batch_size=6)
    s = sc.score(Image.fromarray(lr), [a, b, Image.fromarray(a)])
    assert s.shape == (3,) and np.isfinite(s).all()
    assert sc.last_stats.judged == 6
    assert len(sc.judge.last_texts) == 6  # one batch of 6 games


def test_vllm_backend_names_the_fix_when_missing(tiny_judge):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(RuntimeError, match=r"pip install 'sr4k\[vllm\]'"):
        RefRewardScorer.from_checkpoint(tiny_judge, backend="vllm")
    with pytest.raises(ValueError, match="choose 'transformers' or 'vllm'"):
        RefRewardScorer.from_checkpoint(tiny_judge, backend="onnx")
