"""QC figures on a small fixture whose numbers are worked out by hand below, and against the reference libraries.

The fixture: 4 pairs p1..p4, 3 annotators (ann1, ann2, ann3). Answers in candidate terms (consistency / naturalness):

    pair  left  gold (cons/nat)   ann1          ann2          ann3
    p1    a     a / b             a / b         a / a         a / b
    p2    b     b / -             b / a         b / a         a / tie
    p3    a     -                 tie / a       b / a         (none)
    p4    b     -                 a / b         a / a         skipped (invalid)

plus two rows that must not count: an older version of ann2's p1 annotation (same id, earlier updated_at, answers
b / b) and an earlier second annotation of ann1 on p3 (another id, answers a / b). Lead times: ann1 10, 2, 20, 1 s;
ann2 5 s each; ann3 2.9 s on p1 and none on p2.
"""

import math
import random
import warnings

import krippendorff
import pytest
from sklearn.metrics import cohen_kappa_score

from labelling import qc
from pipelines.store.workspace import write_table
from schemas.labels import ANNOTATIONS, LABEL_TASKS, AnnotationRec, LabelTaskRec

LEFT = {"p1": "a", "p2": "b", "p3": "a", "p4": "b"}


def ann(aid, pair, who, cons, nat, lead=5.0, updated="2026-01-01T00:00:10Z", valid=True, reason=None):
    return AnnotationRec(
        aid,
        aid,
        1,
        pair,
        who,
        LEFT[pair],
        cons,
        nat,
        False,
        valid,
        reason,
        pair in ("p1", "p2"),
        lead,
        "2026-01-01T00:00:00Z",
        updated,
        "[]",
    )


def fixture_annotations() -> list[AnnotationRec]:
    return [
        ann(1, "p1", "ann1", "a", "b", 10.0),
        ann(2, "p2", "ann1", "b", "a", 2.0),
        ann(3, "p3", "ann1", "tie", "a", 20.0, updated="2026-01-02T00:00:00Z"),
        ann(4, "p4", "ann1", "a", "b", 1.0),
        ann(5, "p1", "ann2", "a", "a"),
        ann(5, "p1", "ann2", "b", "b", updated="2026-01-01T00:00:05Z"),  # old version
        ann(6, "p2", "ann2", "b", "a"),
        ann(7, "p3", "ann2", "b", "a"),
        ann(8, "p4", "ann2", "a", "a"),
        ann(9, "p1", "ann3", "a", "b", 2.9),
        ann(10, "p2", "ann3", "a", "tie", None),
        ann(11, "p4", "ann3", None, None, valid=False, reason="skipped"),
        ann(12, "p3", "ann1", "a", "b", 20.0, updated="2026-01-01T00:00:30Z"),  # superseded by annotation 3
    ]


def fixture_tasks() -> list[LabelTaskRec]:
    gold = {"p1": ("a", "b"), "p2": ("b", None)}
    return [
        LabelTaskRec(p, k, 1, f"lr{k}", LEFT[p], p in gold, *gold.get(p, (None, None)), "2026-01-01T00:00:00Z")
        for k, p in enumerate(LEFT, 1)
    ]


def test_account_keeps_latest_and_counts_everything():
    valid, account = qc.current_annotations(fixture_annotations())
    # 13 rows: 1 older version, 1 duplicate (ann1 on p3), 1 invalid (ann3 skipped p4), 10 current valid.
    assert account == {
        "rows": 13,
        "superseded_versions": 1,
        "duplicate_annotations": 1,
        "invalid": 1,
        "invalid_by_reason": {"skipped": 1},
        "invalid_by_annotator": {"ann3": 1},
        "valid": 10,
    }
    mine = {(a.pair_id, a.annotator): (a.consistency, a.naturalness) for a in valid}
    assert mine[("p1", "ann2")] == ("a", "a")  # the latest version, not the older b / b
    assert mine[("p3", "ann1")] == ("tie", "a")  # the annotation updated last
    assert len(mine) == 10


def test_reason_codes():
    assert qc.reason_code("unknown_choice:consistency=C;missing:naturalness") == "missing+unknown_choice"
    assert (qc.reason_code("skipped"), qc.reason_code(None)) == ("skipped", "invalid")


def test_annotator_figures_by_hand():
    s = qc.annotator_stats(fixture_annotations(), fixture_tasks(), policy=False)
    # gold judgements (pair, criterion with a gold answer): p1/cons=a, p1/nat=b, p2/cons=b.
    # ann1: a✓ b✓ b✓ = 3/3; ann2: a✓ a✗ b✓ = 2/3; ann3: a✓ b✓ a✗ = 2/3.
    assert (s["ann1"]["gold_n"], s["ann1"]["gold_accuracy"]) == (3, 1.0)
    assert (s["ann2"]["gold_n"], s["ann2"]["gold_accuracy"]) == (3, pytest.approx(2 / 3))
    assert (s["ann3"]["gold_n"], s["ann3"]["gold_accuracy"]) == (3, pytest.approx(2 / 3))
    # left share, decisive answers only (left: p1 a, p2 b, p3 a, p4 b):
    # ann1: p1 a=L b=R, p2 b=L a=R, p3 tie(-) a=L, p4 a=R b=L -> 4 left of 7.
    # ann2: p1 a=L a=L, p2 b=L a=R, p3 b=R a=L, p4 a=R a=R -> 4 of 8.  ann3: p1 a=L b=R, p2 a=R tie(-) -> 1 of 3.
    assert (s["ann1"]["decisive_n"], s["ann1"]["left_share"]) == (7, pytest.approx(4 / 7))
    assert (s["ann2"]["decisive_n"], s["ann2"]["left_share"]) == (8, 0.5)
    assert (s["ann3"]["decisive_n"], s["ann3"]["left_share"]) == (3, pytest.approx(1 / 3))
    # fast (< 3 s): ann1 2 of 4 (2 s, 1 s); ann2 0 of 4; ann3 1 of 1 timed (2.9 s; p2 has no time).
    assert (s["ann1"]["fast_share"], s["ann2"]["fast_share"], s["ann3"]["fast_share"]) == (0.5, 0.0, 1.0)
    assert s["ann3"]["timed_n"] == 1
    assert (s["ann1"]["n"], s["ann3"]["n"], s["ann3"]["n_invalid"]) == (4, 3, 1)
    assert not any(v["excluded"] for v in s.values())


def test_alpha_by_hand_and_equal_to_krippendorff():
    valid, _ = qc.current_annotations(fixture_annotations())
    # Consistency coincidences (each unit's ordered value pairs weighted 1/(m_u - 1)):
    #   p1 a,a,a -> o_aa += 3; p2 b,b,a -> o_bb += 1, o_ab += 1, o_ba += 1; p3 tie,b -> o_bt = o_tb = 1;
    #   p4 a,a -> o_aa += 2.  n_a = 6, n_b = 3, n_tie = 1, n = 10; disagreeing mass 4.
    #   alpha = 1 - (n - 1) * 4 / (n^2 - sum n_c^2) = 1 - 9 * 4 / (100 - 46) = 1/3.
    assert qc.krippendorff_alpha(valid, "consistency") == pytest.approx(1 / 3)
    # Naturalness: p1 b,a,b -> o_bb 1, o_ab 1, o_ba 1; p2 a,a,tie -> o_aa 1, o_at 1, o_ta 1; p3 a,a -> o_aa 2;
    #   p4 b,a -> o_ab 1, o_ba 1.  n_a 6, n_b 3, n_tie 1; disagreeing mass 6: alpha = 1 - 9 * 6 / 54 = 0.
    assert qc.krippendorff_alpha(valid, "naturalness") == pytest.approx(0.0, abs=1e-12)
    nan = float("nan")  # the reliability matrix written out from the table above (a=0, b=1, tie=2)
    for crit, m in {
        "consistency": [[0, 1, 2, 0], [0, 1, 1, 0], [0, 0, nan, nan]],
        "naturalness": [[1, 0, 0, 1], [0, 0, 0, 0], [1, 2, nan, nan]],
    }.items():
        ref = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
        assert qc.krippendorff_alpha(valid, crit) == pytest.approx(ref, abs=1e-12)


def test_alpha_undefined_is_none():
    one = [ann(1, "p1", "ann1", "a", "a"), ann(2, "p2", "ann2", "b", "b")]  # no pair with two answers
    assert qc.krippendorff_alpha(one, "consistency") is None
    same = [ann(1, "p1", "ann1", "a", "a"), ann(2, "p1", "ann2", "a", "a")]  # one value throughout: D_e = 0
    assert qc.krippendorff_alpha(same, "consistency") is None


def test_kappa_by_hand_and_equal_to_sklearn():
    valid, _ = qc.current_annotations(fixture_annotations())
    kappa, shared = qc.pairwise_kappa(valid)
    assert shared == {"ann1|ann2": 4, "ann1|ann3": 2, "ann2|ann3": 2}
    # ann1 vs ann2, consistency: a b tie a / a b b a. p_o = 3/4; marginals ann1 a2 b1 tie1, ann2 a2 b2:
    #   p_e = (2*2 + 1*2 + 1*0) / 16 = 3/8; kappa = (3/4 - 3/8) / (5/8) = 0.6.
    assert kappa["ann1|ann2"]["consistency"] == pytest.approx(0.6)
    # ann1 vs ann3 (p1, p2), naturalness: b a / b tie. p_o = 1/2, p_e = (b: 1*1) / 4 = 1/4: kappa = 1/3.
    assert kappa["ann1|ann3"]["naturalness"] == pytest.approx(1 / 3)
    # ann1 vs ann3, consistency: a b / a a. p_o = 1/2, p_e = (a: 1*2) / 4 = 1/2: kappa = 0.
    assert kappa["ann1|ann3"]["consistency"] == pytest.approx(0.0)
    by = {(a.annotator, a.pair_id): a for a in valid}
    for key, per in kappa.items():
        u, v = key.split("|")
        common = sorted({p for w, p in by if w == u} & {p for w, p in by if w == v})
        for c, value in per.items():
            ref = cohen_kappa_score([getattr(by[(u, p)], c) for p in common], [getattr(by[(v, p)], c) for p in common])
            assert value == pytest.approx(ref, abs=1e-12), (key, c)


def test_kappa_random_lists_equal_sklearn_and_undefined_is_none():
    rng = random.Random(3)
    for _ in range(50):
        n = rng.randint(2, 40)
        x = [rng.choice("ab") if rng.random() < 0.7 else "tie" for _ in range(n)]
        y = [v if rng.random() < 0.6 else rng.choice(["a", "b", "tie"]) for v in x]
        k = qc.cohen_kappa(x, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a single shared label: sklearn warns and returns nan
            ref = cohen_kappa_score(x, y)
        assert (k is None and math.isnan(ref)) or k == pytest.approx(ref, abs=1e-12)
    assert qc.cohen_kappa(["a", "a"], ["a", "a"]) is None  # p_e = 1: 0/0
    with pytest.warns(UserWarning):  # sklearn: UndefinedMetricWarning, and nan
        assert math.isnan(cohen_kappa_score(["a", "a"], ["a", "a"]))


def test_policy_flags_and_names_the_rule():
    stats = {
        "careful": {
            "gold_n": 40,
            "gold_accuracy": 0.85,
            "decisive_n": 80,
            "left_share": 0.55,
            "timed_n": 40,
            "fast_share": 0.0,
        },
        "random": {
            "gold_n": 40,
            "gold_accuracy": 0.35,
            "decisive_n": 80,
            "left_share": 0.5,
            "timed_n": 40,
            "fast_share": 0.9,
        },
        "lefty": {
            "gold_n": 40,
            "gold_accuracy": 0.7,
            "decisive_n": 80,
            "left_share": 1.0,
            "timed_n": 40,
            "fast_share": 0.0,
        },
        "new": {
            "gold_n": 5,
            "gold_accuracy": 0.2,
            "decisive_n": 10,
            "left_share": 1.0,
            "timed_n": 5,
            "fast_share": 1.0,
        },  # too little evidence for any rule
    }
    out = qc.exclusions(stats)
    assert set(out) == {"random", "lefty"}
    assert "gold_accuracy 0.35" in out["random"] and "fast_share 0.90" in out["random"]
    assert out["lefty"].startswith("left_share 1.00")


def test_exclude_by_hand_and_unknown_annotator():
    s = qc.annotator_stats(fixture_annotations(), fixture_tasks(), exclude=["ann3"])
    assert s["ann3"]["excluded"] and s["ann3"]["reason"] == "excluded by hand"
    with pytest.raises(ValueError, match=r"cannot exclude nobody@x: not an annotator here \(annotators: ann1"):
        qc.annotator_stats(fixture_annotations(), fixture_tasks(), exclude=["nobody@x"])


def test_qc_summary_reads_the_workspace(tmp_path):
    with pytest.raises(FileNotFoundError, match="sr4k label pull"):
        qc.qc_summary(tmp_path)
    write_table(tmp_path / "tables/annotations/part-x.parquet", fixture_annotations(), ANNOTATIONS)
    write_table(tmp_path / "tables/label_tasks/part-x.parquet", fixture_tasks(), LABEL_TASKS)
    s = qc.qc_summary(tmp_path, exclude=["ann3"])
    assert set(s) >= {"annotators", "alpha", "kappa", "alpha_kept", "excluded", "account", "policy"}
    assert set(s["annotators"]["ann1"]) >= {
        "n",
        "gold_n",
        "gold_accuracy",
        "left_share",
        "fast_share",
        "excluded",
        "reason",
    }
    assert s["alpha"]["consistency"] == pytest.approx(1 / 3)
    # without ann3: consistency units p1 a,a; p2 b,b; p3 tie,b; p4 a,a -> o_aa 4, o_bb 2, o_bt = o_tb = 1;
    #   n_a 4, n_b 3, n_tie 1, n = 8: alpha = 1 - 7 * 2 / (64 - 26) = 1 - 14/38 = 12/19.
    assert s["alpha_kept"]["consistency"] == pytest.approx(12 / 19)
    assert s["excluded"] == ["ann3"] and s["account"]["rows"] == 13
    assert s["kappa"]["ann1|ann2"]["consistency"] == pytest.approx(0.6)
