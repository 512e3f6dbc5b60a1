"""Reward functions of the judge's GRPO training, as plain callables ``(completions, **batch) -> list[float]``.

TRL calls each with the sampled completions of a generation batch and every extra dataset column as a keyword
argument (one value per completion; the ``num_generations`` completions of one prompt are consecutive and share
``example_id``). Labels arrive in *screen* terms (``examples.to_screen``): ``"A"`` is the candidate shown first.

- :func:`format_reward` — 1 if the completion is exactly ``<think>…</think><answer>consistency: X; naturalness:
  Y</answer>`` (X, Y ∈ {A, B, tie}); otherwise graded partial credit, 0.125 per tag among ``<think>``,
  ``</think>``, ``<answer>``, ``</answer>`` that occurs exactly once (at most 0.5), as in the ``count_xml`` reward of
  willccbb's public GRPO demo. A model that never emits the format (a base model at step 0) would otherwise see a
  reward constant across each group, hence zero advantage and no gradient.
- :func:`accuracy_reward` (= ``make_accuracy_reward("votes")``) — per criterion, the share of the pair's annotators
  who gave the judge's answer, averaged over criteria; a malformed answer gets 0. Derivation: with votes
  (n_A, n_B, n_tie), the probability that the verdict v matches a randomly drawn annotator is n_v / n. When v is
  the majority label this is exactly the label's *agreement*, so a correct verdict on a unanimous pair earns 1, on a
  3-to-2 pair 0.6 — agreement weighting — while the minority answer on a contested pair earns its share instead of
  0 (it is not a clear mistake). A tie is a third answer like the others: predicting "tie" earns the tie votes.
  ``make_accuracy_reward("label")``: agreement·[v = label] (hard accuracy, weighted by agreement; a tie only
  matches a tie). Weighting survives GRPO's normalisation only if rewards are not divided by the per-group std:
  the recipe's default ``scale_rewards="batch"`` keeps it (see ``config.RewardConfig.scale_rewards``).
- :func:`thurstone_reward` — for the score-output variant (``answer="score"``), after VisualQuality-R1 (Wu et al.
  2025, eq. 4-5). Within the group of G rollouts of one prompt, per criterion, each rollout k gives scores
  (a_k, b_k); μ_A, σ_A² (μ_B, σ_B²) are their mean and population variance over the group's well-formed rollouts.
  Thurstone case V: P(A ≻ B) for rollout k is p_k = Φ((a_k − μ_B) / √(σ_A² + σ_B² + ε)); with ground truth g = 1
  (label A), 0 (B), 0.5 (tie), the fidelity reward is r = √(p·g) + √((1 − p)(1 − g)) ∈ [0, 1], maximal (1) when
  p = g. Both candidates are scored symmetrically: r_k = ½[r(p_k^A, g) + r(p_k^B, 1 − g)] with
  p_k^B = Φ((b_k − μ_A) / √(σ_A² + σ_B² + ε)). Averaged over criteria; malformed rollouts get 0.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from schemas.labels import CRITERIA

THURSTONE_EPS = 1e-6
SCORE_TIE_MARGIN = 0.5  # |a − b| ≤ this reads as a tie when a score answer is turned into a verdict

_V = r"A|B|[Tt][Ii][Ee]"
VERDICT_RE = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<answer>\s*"
    rf"consistency\s*:\s*(?P<consistency>{_V})\s*;\s*naturalness\s*:\s*(?P<naturalness>{_V})"
    r"\s*</answer>\s*$",
    re.S,
)
_NUM = r"[-+]?\d+(?:\.\d+)?"
SCORE_RE = re.compile(
    r"^\s*<think>(?P<think>.*?)</think>\s*<answer>\s*"
    rf"consistency\s*:\s*A\s*=\s*(?P<ca>{_NUM})\s*,\s*B\s*=\s*(?P<cb>{_NUM})\s*;\s*"
    rf"naturalness\s*:\s*A\s*=\s*(?P<na>{_NUM})\s*,\s*B\s*=\s*(?P<nb>{_NUM})"
    r"\s*</answer>\s*$",
    re.S,
)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational form ``[{"role": "assistant", "content": …}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    return ""


def parse_verdict(text: str) -> dict[str, str] | None:
    """``{"consistency": "A"|"B"|"tie", "naturalness": …}`` from a strict verdict answer, else None."""
    m = VERDICT_RE.match(text)
    if not m:
        return None
    return {c: ("tie" if m[c].lower() == "tie" else m[c]) for c in CRITERIA}


def parse_scores(text: str) -> dict[str, tuple[float, float]] | None:
    """``{"consistency": (score_A, score_B), …}`` from a strict score answer, else None."""
    m = SCORE_RE.match(text)
    if not m:
        return None
    return {"consistency": (float(m["ca"]), float(m["cb"])), "naturalness": (float(m["na"]), float(m["nb"]))}


def scores_to_verdict(scores: dict[str, tuple[float, float]], margin: float = SCORE_TIE_MARGIN) -> dict[str, str]:
    return {c: "tie" if abs(a - b) <= margin else ("A" if a > b else "B") for c, (a, b) in scores.items()}


def parse_answer(text: str, answer: str = "verdict") -> dict[str, str] | None:
    """Screen-term verdicts from either answer variant (scores are compared with ``SCORE_TIE_MARGIN``)."""
    if answer == "score":
        s = parse_scores(text)
        return None if s is None else scores_to_verdict(s)
    return parse_verdict(text)


FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
TAG_CREDIT = 0.125


def _graded_format(text: str, strict: bool) -> float:
    if strict:
        return 1.0
    return TAG_CREDIT * sum(text.count(t) == 1 for t in FORMAT_TAGS)


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for a strict verdict answer, else 0.125 per format tag present exactly once."""
    texts = [completion_text(c) for c in completions]
    return [_graded_format(t, parse_verdict(t) is not None) for t in texts]


def score_format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for a strict score answer, else 0.125 per format tag present exactly once."""
    texts = [completion_text(c) for c in completions]
    return [_graded_format(t, parse_scores(t) is not None) for t in texts]


def _criterion_credit(verdict: str, label: str, votes: dict[str, int], agreement: float, weighting: str) -> float:
    if weighting == "votes":
        n = sum(votes.values())
        if n > 0:
            return votes[verdict] / n
    return agreement * float(verdict == label)  # "label" weighting, or a pair with no recorded votes


def make_accuracy_reward(weighting: str = "votes") -> Callable[..., list[float]]:
    """Per-criterion accuracy against the human label, weighted by agreement (see the module docstring)."""
    if weighting not in ("votes", "label"):
        raise ValueError(f"accuracy weighting {weighting!r}: choose 'votes' or 'label'")

    def accuracy_reward(completions: Sequence[Any], **kw: Any) -> list[float]:
        out = []
        for i, c in enumerate(completions):
            v = parse_verdict(completion_text(c))
            if v is None:
                out.append(0.0)
                continue
            credit = []
            for cr in CRITERIA:
                votes = {k: int(kw[f"votes_{cr}_{k}"][i]) for k in ("A", "B", "tie")}
                label, agreement = kw[f"label_{cr}"][i], kw[f"agreement_{cr}"][i]
                credit.append(_criterion_credit(v[cr], label, votes, agreement, weighting))
            out.append(sum(credit) / len(credit))
        return out

    accuracy_reward.__name__ = f"accuracy_reward_{weighting}"
    return accuracy_reward


accuracy_reward = make_accuracy_reward("votes")


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _fidelity(p: float, g: float) -> float:
    return math.sqrt(max(p * g, 0.0)) + math.sqrt(max((1.0 - p) * (1.0 - g), 0.0))


def thurstone_reward(completions: Sequence[Any], example_id: Sequence[str], **kw: Any) -> list[float]:
    """VisualQuality-R1-style Thurstone fidelity reward for score answers (formula in the module docstring)."""
    parsed = [parse_scores(completion_text(c)) for c in completions]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, eid in enumerate(example_id):
        groups[eid].append(i)
    out = [0.0] * len(completions)
    for idx in groups.values():
        ok = [i for i in idx if parsed[i] is not None]
        if not ok:
            continue
        for i in ok:
            total = 0.0
            for cr in CRITERIA:
                a = [parsed[j][cr][0] for j in ok]
                b = [parsed[j][cr][1] for j in ok]
                mu_a, mu_b = sum(a) / len(a), sum(b) / len(b)
                var_a = sum((x - mu_a) ** 2 for x in a) / len(a)
                var_b = sum((x - mu_b) ** 2 for x in b) / len(b)
                sd = math.sqrt(var_a + var_b + THURSTONE_EPS)
                g = {"A": 1.0, "B": 0.0, "tie": 0.5}[kw[f"label_{cr}"][i]]
                ai, bi = parsed[i][cr]
                total += 0.5 * (_fidelity(_phi((ai - mu_b) / sd), g) + _fidelity(_phi((bi - mu_a) / sd), 1.0 - g))
            out[i] = total / len(CRITERIA)
    return out


def reward_functions(answer: str = "verdict", weighting: str = "votes") -> list[Callable[..., list[float]]]:
    """The reward list of one answer variant, in the order of ``RewardConfig.reward_weights()``."""
    if answer == "score":
        return [score_format_reward, thurstone_reward]
    return [format_reward, make_accuracy_reward(weighting)]
