"""Reward functions on hand-written completions: well-formed, malformed, swapped order, tie, Thurstone."""

import math

import pytest
from scipy.stats import norm

from training.reward.rewards import (
    accuracy_reward,
    format_reward,
    make_accuracy_reward,
    parse_verdict,
    reward_functions,
    thurstone_reward,
)

GOOD = "<think>A keeps the edges; B invents texture.</think><answer>consistency: A; naturalness: tie</answer>"
SWAPPED = "<think>x</think><answer>naturalness: tie; consistency: A</answer>"  # criteria in the wrong order
NO_CLOSE = "<think>x</think><answer>consistency: A; naturalness: tie"  # </answer> missing
TRAILING = GOOD + " and more"
NO_THINK = "<answer>consistency: A; naturalness: tie</answer>"
BAD_VALUE = "<think>x</think><answer>consistency: C; naturalness: tie</answer>"


def batch(n, cons="A", nat="tie", cons_votes=(2, 1, 0), nat_votes=(0, 0, 3), cons_agr=2 / 3, nat_agr=1.0):
    kw = {
        "label_consistency": [cons] * n,
        "label_naturalness": [nat] * n,
        "agreement_consistency": [cons_agr] * n,
        "agreement_naturalness": [nat_agr] * n,
    }
    for crit, votes in (("consistency", cons_votes), ("naturalness", nat_votes)):
        for k, v in zip(("A", "B", "tie"), votes, strict=True):
            kw[f"votes_{crit}_{k}"] = [v] * n
    return kw


def test_parse_and_format_reward():
    assert parse_verdict(GOOD) == {"consistency": "A", "naturalness": "tie"}
    assert parse_verdict(GOOD.replace("tie", "TIE")) == {"consistency": "A", "naturalness": "tie"}
    for bad in (SWAPPED, NO_CLOSE, TRAILING, NO_THINK, BAD_VALUE, ""):
        assert parse_verdict(bad) is None
    r = format_reward([GOOD, SWAPPED, NO_CLOSE, NO_THINK, "", "<think><think>"])
    # strict = 1; else 0.125 per tag present exactly once: SWAPPED has all 4, NO_CLOSE 3, NO_THINK 2, a doubled tag 0
    assert r == [1.0, 0.5, 0.375, 0.25, 0.0, 0.0]


def test_accuracy_reward_vote_share():
    completions = [
        GOOD,  # consistency A (2 of 3 votes), naturalness tie (3 of 3)
        GOOD.replace("consistency: A", "consistency: B"),  # minority answer: 1 of 3 votes
        GOOD.replace("naturalness: tie", "naturalness: A"),  # nobody voted A on naturalness
        SWAPPED,
    ]
    r = accuracy_reward(completions, **batch(4))
    assert r == pytest.approx([(2 / 3 + 1) / 2, (1 / 3 + 1) / 2, (2 / 3 + 0) / 2, 0.0])


def test_accuracy_reward_label_weighting_and_ties():
    acc = make_accuracy_reward("label")
    completions = [
        GOOD,
        GOOD.replace("consistency: A", "consistency: tie"),
        GOOD.replace("tie</answer>", "B</answer>"),
    ]
    r = acc(completions, **batch(3))
    # agreement·hit: consistency label A (agreement 2/3), naturalness label tie (agreement 1); a tie only matches a tie
    assert r == pytest.approx([(2 / 3 + 1) / 2, (0 + 1) / 2, (2 / 3 + 0) / 2])


def test_accuracy_reward_swapped_screen_order():
    # the same pair shown the other way round: the human label "a" is now screen "B", votes swap with it
    kw = batch(2, cons="B", cons_votes=(1, 2, 0))
    r = accuracy_reward([GOOD.replace("consistency: A", "consistency: B"), GOOD], **kw)
    assert r == pytest.approx([(2 / 3 + 1) / 2, (1 / 3 + 1) / 2])


def test_conversational_completions():
    conv = [
        [{"role": "assistant", "content": GOOD}],
        [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}],
    ]
    assert format_reward(conv) == [1.0, 1.0]
    assert accuracy_reward(conv, **batch(2)) == pytest.approx([(2 / 3 + 1) / 2] * 2)


def score(ca, cb, na, nb):
    return f"<think>t</think><answer>consistency: A={ca}, B={cb}; naturalness: A={na}, B={nb}</answer>"


def test_thurstone_reward_extremes():
    # all rollouts agree (σ = 0): confident and right → 1; confident and wrong → 0; confident on a tie → √½
    kw = {
        "label_consistency": ["A"] * 4 + ["B"] * 2,
        "label_naturalness": ["tie"] * 4 + ["B"] * 2,
        "example_id": ["e1"] * 2 + ["e2"] * 2 + ["e3"] * 2,
    }
    comps = [score(9, 1, 5, 5)] * 2 + [score(1, 9, 5, 5)] * 2 + [score(1, 9, 2, 8), "malformed"]
    r = thurstone_reward(comps, **kw)
    # e1: consistency 1, naturalness p = Φ(0) = ½ vs g = ½ → √¼ + √¼ = 1; e2: consistency 0; e3 alone: right on both
    assert r[:2] == pytest.approx([1.0, 1.0])
    assert r[2:4] == pytest.approx([0.5, 0.5])
    assert r[4] == pytest.approx(1.0) and r[5] == 0.0
    tie_kw = {"label_consistency": ["tie"] * 2, "label_naturalness": ["tie"] * 2, "example_id": ["t"] * 2}
    assert thurstone_reward([score(9, 1, 5, 5)] * 2, **tie_kw)[0] == pytest.approx((math.sqrt(0.5) + 1) / 2)


def test_thurstone_reward_matches_formula():
    comps = [score(7, 5, 3, 6), score(6, 6, 4, 4.5), score(8, 3, 2, 7)]
    kw = {"label_consistency": ["A"] * 3, "label_naturalness": ["B"] * 3, "example_id": ["g"] * 3}
    got = thurstone_reward(comps, **kw)
    s = {"consistency": [(7, 5), (6, 6), (8, 3)], "naturalness": [(3, 6), (4, 4.5), (2, 7)]}
    g = {"consistency": 1.0, "naturalness": 0.0}
    for k in range(3):
        total = 0.0
        for crit, pairs in s.items():
            a = [x for x, _ in pairs]
            b = [y for _, y in pairs]
            mu_a, mu_b = sum(a) / 3, sum(b) / 3
            sd = math.sqrt(sum((x - mu_a) ** 2 for x in a) / 3 + sum((y - mu_b) ** 2 for y in b) / 3 + 1e-6)
            pa, pb = norm.cdf((a[k] - mu_b) / sd), norm.cdf((b[k] - mu_a) / sd)
            fa = math.sqrt(pa * g[crit]) + math.sqrt((1 - pa) * (1 - g[crit]))
            fb = math.sqrt(pb * (1 - g[crit])) + math.sqrt((1 - pb) * g[crit])
            total += (fa + fb) / 2
        assert got[k] == pytest.approx(total / 2)


def test_reward_function_sets():
    assert [f.__name__ for f in reward_functions("verdict")] == ["format_reward", "accuracy_reward_votes"]
    assert [f.__name__ for f in reward_functions("score")] == ["score_format_reward", "thurstone_reward"]
    with pytest.raises(ValueError, match="choose 'votes' or 'label'"):
        make_accuracy_reward("share")
