"""Aggregation: majority with ties on a hand-checked fixture, Dawid–Skene via crowd-kit, Bradley–Terry equal to choix,
and a simulation of 2,100 pairs with known model qualities, three careful annotators, a spammer and an always-left
clicker: the QC policy flags the two bad ones and the recomputed ranking recovers the true order.
"""

import json
import math

import choix
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from crowdkit.aggregation import DawidSkene
from scipy.stats import kendalltau

from labelling import aggregate as agg
from labelling import qc
from pipelines.pairs.build import BT_ALPHA, PAIRS, PairRec, pair_id
from pipelines.store.workspace import write_table
from schemas.labels import ANNOTATIONS, CRITERIA, LABEL_TASKS, AnnotationRec, LabelTaskRec

MODELS = [f"m{k}" for k in range(8)]
# hidden qualities on the BT logit scale, one order per criterion (the naturalness order is a different one)
QUALITY = {
    "consistency": dict(zip(MODELS, [0.0, 0.45, 0.9, 1.35, 1.8, 2.25, 2.7, 3.15], strict=True)),
    "naturalness": dict(zip(MODELS, [1.8, 3.15, 0.0, 2.7, 0.45, 1.35, 2.25, 0.9], strict=True)),
}


def pair(k: int, ma: str, mb: str, left: str = "a") -> PairRec:
    lr = f"lr{k:05d}"
    return PairRec(
        pair_id(lr, ma, "v1", mb, "v1"),
        lr,
        ma,
        mb,
        "v1",
        "v1",
        f"/c/{ma}/{lr}.png",
        f"/c/{mb}/{lr}.png",
        left,
        "balanced",
        None,
        None,
        0,
    )


def vote(aid: int, p: PairRec, who: str, cons, nat, lead=8.0, valid=True, reason=None, gold=False, unusable=False):
    return AnnotationRec(
        aid,
        aid,
        1,
        p.pair_id,
        who,
        p.left,
        cons,
        nat,
        unusable,
        valid,
        reason,
        gold,
        lead,
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z",
        "[]",
    )


# ---------------------------------------------------------------------------------------------------- fixture


def small():
    ps = [pair(k, "m0", "m1") for k in range(3)] + [pair(3, "m1", "m2"), pair(4, "m0", "m2"), pair(5, "m0", "m2")]
    v = [
        vote(1, ps[0], "x", "a", "b"),
        vote(2, ps[0], "y", "a", "a"),
        vote(3, ps[0], "z", "a", "b", unusable=True),
        vote(4, ps[1], "x", "b", "a"),
        vote(5, ps[1], "y", "b", "a"),
        vote(6, ps[1], "z", "a", "tie"),
        vote(7, ps[2], "x", "tie", "a"),
        vote(8, ps[2], "y", "b", "a"),
        vote(9, ps[3], "x", "a", "b"),
        vote(10, ps[3], "y", "a", "a"),
        vote(11, ps[4], "x", None, None, valid=False, reason="skipped"),
        vote(12, ps[4], "y", "a", None),  # answered consistency only: no naturalness vote, so no preference row
        vote(13, ps[2], "w", "a", "a"),  # w is excluded below
        vote(14, pair(99, "m0", "m1"), "x", "a", "a"),  # a pair that is not in the pairs table
    ]
    return ps, v


def test_majority_rule():
    assert agg.majority({"a": 2, "b": 1}) == "a"
    assert agg.majority({"a": 2, "b": 2}) == "tie"  # no strict plurality
    assert agg.majority({"a": 1, "tie": 1}) == "tie"
    assert agg.majority({"a": 1, "b": 1, "tie": 1}) == "tie"
    assert agg.majority({"b": 1, "tie": 3}) == "tie"
    with pytest.raises(ValueError):
        agg.majority({})


def test_small_fixture_by_hand():
    ps, v = small()
    out = agg.aggregate(v, [], ps, exclude=["w"], lr_paths={ps[0].pair_id: "benchmarks/b/lr/x.png"}, bootstrap=20)
    got = {p.pair_id: p for p in out.preferences}
    p0, p1, p2, p3 = (got[p.pair_id] for p in ps[:4])
    # pair 0: cons a,a,a -> a (1.0); nat b,a,b -> b (2/3); one "both unusable" vote
    assert (p0.consistency, p0.consistency_agreement, p0.naturalness, p0.naturalness_agreement) == (
        "a",
        1.0,
        "b",
        pytest.approx(2 / 3),
    )
    assert (p0.naturalness_votes_a, p0.naturalness_votes_b, p0.both_unusable_votes, p0.n_annotators) == (1, 2, 1, 3)
    assert p0.lr_path == "benchmarks/b/lr/x.png" and p1.lr_path == ""
    # pair 1: cons b,b,a -> b (2/3); nat a,a,tie -> a (2/3)
    assert (p1.consistency, p1.consistency_agreement, p1.naturalness) == ("b", pytest.approx(2 / 3), "a")
    # pair 2: cons tie,b -> no strict plurality -> tie, agreement 1/2 (w's vote is excluded); nat a,a -> a
    assert (p2.consistency, p2.consistency_agreement, p2.consistency_votes_tie, p2.n_annotators) == ("tie", 0.5, 1, 2)
    assert (p3.consistency, p3.naturalness, p3.naturalness_agreement) == ("a", "tie", 0.0)  # nat a,b -> tie
    r = out.report
    # 14 rows = 1 invalid + 1 excluded (w) + 1 unknown pair + 11 used; pair 4 has no naturalness vote, pair 5 none
    assert (r["annotation_rows"], r["invalid"], r["excluded_annotator_votes"], r["unknown_pair"], r["used"]) == (
        14,
        1,
        1,
        1,
        11,
    )
    assert (r["preferences"], r["pairs_unannotated"], r["pairs_without_vote_on"]) == (4, 1, {"naturalness": 1})
    assert r["labels"]["consistency"] == {"a": 2, "b": 1, "tie": 1}
    # BT over the decisive labels: consistency m0>m1 (pair 0), m1>m0 (pair 1), m1>m2 (pair 3); the tie is dropped.
    rows = {x["model"]: x for x in out.rankings["consistency"]}
    assert (rows["m0"]["wins"], rows["m0"]["losses"], rows["m0"]["ties"]) == (1, 1, 1)
    assert (rows["m1"]["wins"], rows["m1"]["losses"], rows["m2"]["losses"]) == (2, 1, 1)
    theta = choix.ilsr_pairwise(3, [(0, 1), (1, 0), (1, 2)], alpha=BT_ALPHA)
    for k, m in enumerate(["m0", "m1", "m2"]):
        assert rows[m]["theta"] == pytest.approx(theta[k], abs=1e-6)
    assert [x["rank"] for x in out.rankings["consistency"]] == [1, 2, 3]
    assert out.rankings["consistency"][0]["model"] == "m1"


def test_dawid_skene_equals_crowdkit_on_the_same_votes():
    ps, v = small()
    out = agg.aggregate(v, [], ps, exclude=["w"], bootstrap=0)
    known = {p.pair_id for p in ps}
    for c in CRITERIA:
        rows = [
            (a.annotator, a.pair_id, getattr(a, c))
            for a in v
            if a.valid and a.annotator != "w" and a.pair_id in known and getattr(a, c) is not None
        ]
        df = pd.DataFrame(rows, columns=["worker", "task", "label"])
        ref = DawidSkene(n_iter=100, tol=1e-5).fit(df).probas_
        for p in out.preferences:
            label = getattr(p, c)
            assert getattr(p, f"{c}_ds") == pytest.approx(float(ref.loc[p.pair_id].get(label, 0.0)), abs=1e-9)


# ---------------------------------------------------------------------------------------------------- simulation


def simulate(n_pairs: int = 2100, seed: int = 0):
    """8 models with hidden qualities; each pair annotated by 3 of 5 annotators: three careful ones (BT answers at
    sharpness 1.0-2.0, 8 % ties, ~12 s), a spammer (uniform a/b/tie in ~1.5 s) and an always-left clicker; gold pairs
    are clear ones (quality gap >= 1.3 on both criteria), their gold answer the better model. Plus a few skipped and
    re-edited annotations."""
    rng = np.random.default_rng(seed)
    model_pairs = [(a, b) for i, a in enumerate(MODELS) for b in MODELS[i + 1 :]]
    pairs = [
        pair(k, *model_pairs[k % len(model_pairs)], left="ab"[(k // len(model_pairs) + k) % 2]) for k in range(n_pairs)
    ]
    careful = {"ann1@x": 1.0, "ann2@x": 1.5, "ann3@x": 2.0}
    people = [*careful, "spam@x", "lefty@x"]
    gap = {c: {p.pair_id: QUALITY[c][p.model_a] - QUALITY[c][p.model_b] for p in pairs} for c in CRITERIA}
    tasks, votes, aid = [], [], 0
    for k, p in enumerate(pairs):
        is_gold = all(abs(gap[c][p.pair_id]) >= 1.3 for c in CRITERIA) and k % 3 == 0
        gold = [("a" if gap[c][p.pair_id] > 0 else "b") if is_gold else None for c in CRITERIA]
        tasks.append(LabelTaskRec(p.pair_id, k, 1, p.lr_key, p.left, is_gold, *gold, "2026-01-01T00:00:00Z"))
        for who in rng.choice(people, size=3, replace=False):
            aid += 1
            if who in careful:
                ans = []
                for c in CRITERIA:
                    pa = 0.92 / (1 + math.exp(-careful[who] * gap[c][p.pair_id]))
                    ans.append(rng.choice(["a", "b", "tie"], p=[pa, 0.92 - pa, 0.08]))
                lead = float(rng.lognormal(math.log(12), 0.4))
            elif who == "spam@x":
                ans, lead = list(rng.choice(["a", "b", "tie"], size=2)), float(rng.uniform(0.8, 2.5))
            else:
                ans, lead = [p.left, p.left], float(rng.lognormal(math.log(8), 0.3))
            votes.append(vote(aid, p, str(who), str(ans[0]), str(ans[1]), lead, gold=is_gold))
    for a in votes[:30:3]:  # skipped tasks: invalid rows, counted and reported
        a.valid, a.consistency, a.naturalness, a.invalid_reason = False, None, None, "skipped"
    for a in votes[40:60:4]:  # an older version of an edited annotation: must be superseded
        votes.append(vote(a.annotation_id, pairs[0], a.annotator, "b", "b", 1.0))
        votes[-1].pair_id, votes[-1].updated_at = a.pair_id, "2025-12-31T00:00:00Z"
    return pairs, tasks, votes


@pytest.fixture(scope="module")
def sim():
    return simulate()


def test_simulation_policy_flags_the_bad_annotators(sim):
    _, tasks, votes = sim
    report = qc.qc_report(votes, tasks)
    assert report["excluded"] == ["lefty@x", "spam@x"]
    a = report["annotators"]
    assert "gold_accuracy" in a["spam@x"]["reason"] and "fast_share" in a["spam@x"]["reason"]
    assert a["lefty@x"]["left_share"] == 1.0 and "left_share" in a["lefty@x"]["reason"]
    for who in ("ann1@x", "ann2@x", "ann3@x"):
        assert a[who]["gold_accuracy"] > 0.65 and abs(a[who]["left_share"] - 0.5) < 0.1 and not a[who]["excluded"]
    assert a["spam@x"]["gold_accuracy"] < 0.45 and a["spam@x"]["gold_n"] >= 100
    assert report["account"]["invalid"] == 10 and report["account"]["superseded_versions"] == 5
    for c in CRITERIA:  # removing the spammer and the always-left clicker raises agreement
        assert report["alpha_kept"][c] > report["alpha"][c] + 0.05


def test_simulation_recovers_the_true_ranking(sim):
    pairs, tasks, votes = sim
    excluded = qc.qc_report(votes, tasks)["excluded"]
    out = agg.aggregate(votes, tasks, pairs, exclude=excluded, bootstrap=100)
    assert len(pairs) >= 2000
    r = out.report
    assert r["used"] + r["excluded_annotator_votes"] + r["invalid"] + r["superseded_versions"] == len(votes)
    assert r["preferences"] + r["pairs_unannotated"] + sum(r["pairs_without_vote_on"].values()) == len(pairs)
    for c in CRITERIA:
        rows = out.rankings[c]
        est = {x["model"]: x["theta"] for x in rows}
        tau = kendalltau([QUALITY[c][m] for m in MODELS], [est[m] for m in MODELS]).statistic
        assert tau >= 0.9, (c, tau, rows)
        assert all(x["ci_low"] < x["theta"] < x["ci_high"] for x in rows)
        # equal to choix on the same data: decisive per-pair labels, models in name order
        index = {m: k for k, m in enumerate(sorted(MODELS))}
        data = [
            (index[p.model_a], index[p.model_b]) if getattr(p, c) == "a" else (index[p.model_b], index[p.model_a])
            for p in out.preferences
            if getattr(p, c) != "tie"
        ]
        ref = choix.ilsr_pairwise(len(MODELS), data, alpha=BT_ALPHA)
        for m, k in index.items():
            assert est[m] == pytest.approx(ref[k], abs=1e-6)
        assert r["labels"][c]["tie"] + len(data) == len(out.preferences)
    print({c: [x["model"] for x in out.rankings[c]] for c in CRITERIA})


def test_workspace_aggregate_writes_and_replaces(tmp_path, sim):
    pairs, tasks, votes = sim
    pairs, keep = pairs[:300], {p.pair_id for p in pairs[:300]}
    write_table(tmp_path / "tables/pairs/part-p.parquet", pairs, PAIRS)
    write_table(tmp_path / "tables/label_tasks/part-p.parquet", [t for t in tasks if t.pair_id in keep], LABEL_TASKS)
    write_table(tmp_path / "tables/annotations/part-p.parquet", [a for a in votes if a.pair_id in keep], ANNOTATIONS)
    out = agg.aggregate_workspace(tmp_path, bootstrap=20)
    table = tmp_path / "tables/preferences/part-all.parquet"
    n = pq.read_metadata(table).num_rows
    assert n == out["report"]["preferences"] > 250
    ranking = json.loads((tmp_path / "labelling/ranking.json").read_text())
    assert ranking["qc"]["excluded"] == ["lefty@x", "spam@x"] == ranking["report"]["excluded_annotators"]
    assert ranking["rankings"]["consistency"][0]["model"] in ("m6", "m7")  # the two best
    # the covariance travels with the rows: `sr4k pairs build --strategy active --estimates` reads both
    from pipelines.pairs.build import estimates_from_ranking

    for est in estimates_from_ranking(ranking):
        cov = np.asarray(est.covariance)
        assert cov.shape == (len(est), len(est)) and np.allclose(cov, cov.T)
        assert np.allclose(np.sqrt(np.diag(cov)), [est[m][1] for m in est.models])
    # a rerun with everyone kept replaces the table (no second part, no duplicate rows)
    out2 = agg.aggregate_workspace(tmp_path, policy=False, bootstrap=20)
    assert out2["report"]["excluded_annotators"] == []
    assert sorted(p.name for p in table.parent.iterdir()) == ["part-all.parquet"]
    con = duckdb.connect()
    rows, distinct = con.execute(f"select count(*), count(distinct pair_id) from '{table}'").fetchone()
    assert rows == distinct == out2["report"]["preferences"]
    assert out2["report"]["used"] > out["report"]["used"]
    assert math.isfinite(out2["agreement"]["consistency"]["mean_agreement"])
