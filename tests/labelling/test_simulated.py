"""2,100 pairs ranked by simulated annotators with a known truth and noise, through the real Label Studio.

Tasks are imported with their annotations embedded (``push_pairs(prelabelled=...)``; ``annotations.create`` costs
~0.13 s each), one Label Studio user per annotator. Each annotator answers like a Bradley–Terry judge with their own
noise (P(candidate i wins) = sigmoid((theta_i - theta_j) / T)), 8 % ties, and the answer is given in *screen* terms,
so the pull has to undo the left/right placement. The two criteria have different true orders. The aggregation must
recover both true model rankings exactly.
"""

import time

import numpy as np
import pytest
from lsfixtures import make_lr_set, make_pairs
from scipy.special import expit

from labelling import push, server
from labelling.pull import latest_annotations, pull_annotations
from schemas.labels import AnnotationRec, LabelTaskRec

pytestmark = pytest.mark.slow

TRUTH = {  # model -> (consistency theta, naturalness theta); names are not in either order
    "sim_kappa": (1.2, -0.2),
    "sim_delta": (0.7, 1.1),
    "sim_omega": (0.25, 0.6),
    "sim_alpha": (-0.2, -1.3),
    "sim_zeta": (-0.65, 0.15),
    "sim_beta": (-1.3, -0.35),
}
ANNOTATORS = {"sim1@lab.org": 0.8, "sim2@lab.org": 1.0, "sim3@lab.org": 1.4}  # noise temperature T


def test_simulated_annotators_recover_the_true_rankings(ls):
    ws, settings = ls
    models = list(TRUTH)
    make_lr_set(ws, "sim", 360, models=models, seed=7, distinct_images=False)
    pairs = make_pairs(ws, "sim", 2100, "sim", seed=3)
    api = server.Api.for_workspace(ws, settings)
    users = {u["email"]: u["id"] for u in server.list_users(api)}
    for email in ANNOTATORS:
        if email not in users:
            users[email] = api.post("/api/users/", {"email": email, "username": email})["id"]
    rng = np.random.default_rng(11)

    def answer(pair: dict, left: str, criterion: int, temp: float) -> str:
        d = TRUTH[pair["model_a"]][criterion] - TRUTH[pair["model_b"]][criterion]
        if rng.random() < 0.08:
            return "tie"
        winner = "a" if rng.random() < expit(d / temp) else "b"
        return "left" if winner == left else "right"

    def prelabelled(pair: dict, data: dict) -> list[dict]:
        return [
            {
                "completed_by": users[email],
                "lead_time": float(rng.uniform(3, 20)),
                "result": [
                    {
                        "from_name": c,
                        "to_name": "left_crop",
                        "type": "choices",
                        "value": {"choices": [answer(pair, data["sr4k_left"], k, temp)]},
                    }
                    for k, c in enumerate(("consistency", "naturalness"))
                ],
            }
            for email, temp in ANNOTATORS.items()
        ]

    t0 = time.monotonic()
    r = push.push_pairs(
        ws, "sim", overlap=3, gold_rate=0.05, project="sim", settings=settings, prelabelled=prelabelled
    )
    t_push = time.monotonic() - t0
    assert (r["imported"], r["duplicates"]) == (2100, 0) and r["gold_imported"] == round(0.05 * 2100 / 0.95)
    t0 = time.monotonic()
    rep = pull_annotations(ws, "sim", settings)
    t_pull = time.monotonic() - t0
    print(
        f"\npush 2100 pairs + {r['gold_imported']} gold with 6300 annotations: {t_push:.1f} s; "
        f"pull 6300: {t_pull:.1f} s (export {rep['export_seconds']:.1f} s)"
    )
    assert (rep["new_rows"], rep["invalid_new"]) == (6300, 0)  # (a second pull adding 0: test_push_pull)

    pid = r["project_id"]
    rows = latest_annotations(ws, pid)
    assert len(rows) == 6300 and len({(x["pair_id"], x["annotator"]) for x in rows}) == 6300
    assert {x["annotator"] for x in rows} == set(ANNOTATORS)
    anns = [AnnotationRec(**{k: x[k] for k in AnnotationRec.__dataclass_fields__}) for x in rows]
    tasks = [
        LabelTaskRec(**{k: m[k] for k in LabelTaskRec.__dataclass_fields__}) for m in push.mapping(ws, pid).values()
    ]
    pair_dicts = [
        {
            f: getattr(p, f)
            for f in ("pair_id", "lr_key", "model_a", "model_b", "version_a", "version_b", "path_a", "path_b", "left")
        }
        for p in pairs
    ]
    for k, criterion in enumerate(("consistency", "naturalness")):
        truth = sorted(models, key=lambda m: -TRUTH[m][k])
        assert _recovered(anns, tasks, pair_dicts, criterion, models) == truth, criterion


def _recovered(anns, tasks, pairs, criterion: str, models: list[str]) -> list[str]:
    """The model order the aggregation finds (labelling.aggregate if present, else BT on the raw votes)."""
    try:
        from labelling.aggregate import aggregate
    except ImportError:
        from pipelines.pairs.build import fit_bradley_terry

        by_id = {p["pair_id"]: p for p in pairs}
        comps = []
        for a in anns:
            label, p = getattr(a, criterion), by_id.get(a.pair_id)
            if p and label in ("a", "b"):
                comps.append((p["model_a"], p["model_b"]) if label == "a" else (p["model_b"], p["model_a"]))
        est = fit_bradley_terry(comps, sorted(models), bootstrap=0)
        return sorted(models, key=lambda m: -est[m][0])
    result = aggregate(anns, tasks, pairs, bootstrap=20)
    assert result.report["used"] == len(anns)
    return [row["model"] for row in result.rankings[criterion]]
