"""RefRewardScorer: per-candidate scores from a pairwise judge, by a round-robin tournament + Bradley–Terry.

Used as the reward of the SR GRPO recipe (``training/sr``): for one LR and its G candidates (a GRPO group),
``score(lr, candidates)`` returns G floats, higher = better.

Tournament
    Every unordered pair {i, j} is judged in *both* screen orders, (A=i, B=j) and (A=j, B=i), so a judge's position
    preference adds the same to both sides and cancels. Per criterion c, a verdict adds one win to the winner
    (w_c[i, j] += 1), a tie half a win to each, a malformed answer nothing. G candidates cost G(G−1) judge calls,
    all sent to the judge as one batch (``score_batch`` batches across groups too).

Bradley–Terry (per criterion)
    P(i ≻ j) = σ(θ_i − θ_j). θ maximises the penalised log-likelihood
        ℓ(θ) = Σ_{i≠j} w_ij log σ(θ_i − θ_j) − (λ/2) ‖θ‖²,
    concave, solved by Newton's method: gradient g_i = Σ_j [w_ij − n_ij σ(θ_i − θ_j)] − λθ_i with n_ij = w_ij + w_ji,
    Hessian H_ii = −Σ_j n_ij p_ij(1 − p_ij) − λ, H_ij = n_ij p_ij(1 − p_ij). The ridge term (a N(0, 1/λ) prior,
    λ = 0.1) keeps θ finite when a candidate wins every game, and at the optimum Σ_i g_i = −λ Σ_i θ_i = 0, so the
    scores are centred: Σ_i θ_i = 0.

Scale
    ``method="bt"`` (default): score_i = Σ_c weight_c · θ_{i,c}, weights summing to 1 (default ½ consistency,
    ½ naturalness). Natural-log BT strengths, mean 0 within the group: score_i − score_j is the (weighted) log-odds
    that i beats j; a group of one scores 0. ``method="wins"``: the weighted share of games won (ties ½), in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from schemas.labels import CRITERIA

Verdict = dict[str, str] | None
Judge = Callable[[Any, Any, Any], Verdict]
BT_L2 = 0.1


def bradley_terry(wins: np.ndarray, l2: float = BT_L2, iters: int = 50, tol: float = 1e-10) -> np.ndarray:
    """Ridge-penalised Bradley–Terry log-strengths from a (n, n) matrix of (fractional) wins; see the docstring."""
    n = wins.shape[0]
    theta = np.zeros(n)
    if n < 2:
        return theta
    games = wins + wins.T
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        grad = (wins - games * p).sum(axis=1) - l2 * theta
        h = games * p * (1.0 - p)  # zero diagonal: no self-games
        hess = h - np.diag(h.sum(axis=1) + l2)
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if np.abs(step).max() < tol:
            break
    return theta - theta.mean()


def _norm(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return "tie" if s.lower() == "tie" else (s.upper() if s.upper() in ("A", "B") else None)


@dataclass
class TournamentStats:
    judged: int = 0
    malformed: int = 0
    per_criterion_ties: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))


class RefRewardScorer:
    """Scores candidates of one LR by a pairwise tournament of a judge (module docstring: protocol and scale).

    ``judge`` is any callable ``judge(lr, a, b) -> {"consistency": "A"|"B"|"tie", "naturalness": …}`` (None or a
    missing criterion = no information); if it also has ``judge_batch(list of (lr, a, b))`` the tournament sends
    its games in batches of ``batch_size``.
    """

    def __init__(
        self,
        judge: Judge,
        criteria_weights: dict[str, float] | None = None,
        method: str = "bt",
        batch_size: int = 16,
        l2: float = BT_L2,
    ):
        if method not in ("bt", "wins"):
            raise ValueError(f"method {method!r}: choose 'bt' (Bradley–Terry) or 'wins' (share of games won)")
        w = criteria_weights or dict.fromkeys(CRITERIA, 1.0)
        unknown = set(w) - set(CRITERIA)
        if unknown or sum(w.values()) <= 0:
            raise ValueError(f"criteria_weights {w}: keys among {CRITERIA}, positive total")
        total = sum(w.values())
        self.weights = {c: w.get(c, 0.0) / total for c in CRITERIA}
        self.judge, self.method, self.batch_size, self.l2 = judge, method, batch_size, l2
        self.last_stats = TournamentStats()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, backend: str = "transformers", device: str | None = None, **kwargs: Any
    ) -> RefRewardScorer:
        """A scorer over a trained judge folder. ``kwargs`` go to the scorer (criteria_weights, method,
        batch_size, l2) or, if not the scorer's, to the judge backend (e.g. max_new_tokens, gpu_memory_utilization)."""
        from training.reward.judge import load_judge

        own = {k: kwargs.pop(k) for k in ("criteria_weights", "method", "batch_size", "l2") if k in kwargs}
        if backend == "transformers" and "batch_size" in own:
            kwargs["batch_size"] = own["batch_size"]
        judge = load_judge(path, backend=backend, device=device, **kwargs)
        return cls(judge, **own)

    def _judge_many(self, triples: list[tuple[Any, Any, Any]]) -> list[Verdict]:
        batch = getattr(self.judge, "judge_batch", None)
        if batch is None:
            return [self.judge(*t) for t in triples]
        out: list[Verdict] = []
        for i in range(0, len(triples), self.batch_size):
            out += list(batch(triples[i : i + self.batch_size]))
        return out

    def _scores(self, n: int, games: list[tuple[int, int]], verdicts: list[Verdict]) -> np.ndarray:
        wins = {c: np.zeros((n, n)) for c in CRITERIA}
        for (i, j), v in zip(games, verdicts, strict=True):
            self.last_stats.judged += 1
            if not v:
                self.last_stats.malformed += 1
                continue
            for c in CRITERIA:
                r = _norm(v.get(c))
                if r == "A":
                    wins[c][i, j] += 1
                elif r == "B":
                    wins[c][j, i] += 1
                elif r == "tie":
                    wins[c][i, j] += 0.5
                    wins[c][j, i] += 0.5
                    self.last_stats.per_criterion_ties[c] += 1
        score = np.zeros(n)
        for c in CRITERIA:
            if self.weights[c] == 0:
                continue
            if self.method == "bt":
                s = bradley_terry(wins[c], self.l2)
            else:
                played = (wins[c] + wins[c].T).sum(axis=1)
                s = np.divide(wins[c].sum(axis=1), played, out=np.full(n, 0.5), where=played > 0)
            score += self.weights[c] * s
        return score

    def score_batch(self, lrs: Sequence[Any], groups: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        """Scores of several groups (one LR each), all games judged as one batched stream."""
        if len(lrs) != len(groups):
            raise ValueError(f"{len(lrs)} LR images for {len(groups)} candidate groups")
        self.last_stats = TournamentStats()
        plan = []
        triples = []
        for lr, cands in zip(lrs, groups, strict=True):
            games = list(permutations(range(len(cands)), 2))  # (i, j): i shown as A — both orders of each pair
            plan.append((len(cands), games, len(triples)))
            triples += [(lr, cands[i], cands[j]) for i, j in games]
        verdicts = self._judge_many(triples)
        return [self._scores(n, games, verdicts[start : start + len(games)]) for n, games, start in plan]

    def score(self, lr: Any, candidates: Sequence[Any]) -> np.ndarray:
        """One float per candidate (np.float64), higher is better; see the module docstring for the scale."""
        return self.score_batch([lr], [candidates])[0]
