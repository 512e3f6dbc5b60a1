"""Quality control of pairwise human rankings: gold accuracy, agreement, position bias, speed, and who is excluded.

Everything here is a pure function over lists of ``schemas.labels.AnnotationRec`` (and ``LabelTaskRec`` for the gold
answers), except ``qc_summary(workspace)``, which reads the workspace's ``annotations`` and ``label_tasks`` tables
and is what ``sr4k label status`` and ``sr4k aggregate`` print.

Which annotations count (``current_annotations``)
    The annotations table holds one row per (annotation id, ``updated_at``): an edited annotation appears once per
    version. Only the latest version of each annotation id counts (``superseded_versions``). If one annotator has
    several annotations of one pair (the task annotated twice, or the pair pushed to two projects), only the one
    updated last counts (``duplicate_annotations``). Invalid annotations (``valid`` false: skipped, unknown choice,
    missing answer) are counted per annotator and per ``invalid_reason`` and take part in nothing else. Every row of
    the table is in exactly one of: superseded, duplicate, invalid, current valid (``account`` checks the sum).

Per-annotator figures (over the annotator's current valid annotations)
    - ``gold_accuracy`` = correct / ``gold_n``, where ``gold_n`` counts *judgements*: one per (gold annotation,
      criterion) whose gold answer (``label_tasks.gold_<criterion>``) is set and whose answer is set. A "tie" answer
      is correct only when the gold answer is "tie".
    - ``left_share`` = (decisive answers that chose the candidate shown on the left) / (decisive answers), decisive
      meaning "a" or "b" (a tie has no side), one answer per (annotation, criterion). Pairs are built with the left
      side alternating, so a careful annotator sits near 0.5 whatever the models' quality.
    - ``fast_share`` = (annotations with ``lead_time`` < ``FAST_SECONDS``) / (annotations with a ``lead_time``):
      comparing two 4K candidates against their LR on two criteria in under 3 s is not a judgement. None when no
      annotation has a time.
    - ``peer_agreement``: the share of the annotator's answers equal to the strict-plurality answer of the *other*
      annotators of the same pair and criterion (pairs where the others have no strict plurality are skipped).
      Reported, not used by the policy (it needs no gold, so it is the figure to watch before gold accrues).

Exclusion policy (``exclusions``; thresholds are the module constants, each rule needs enough evidence first)
    1. ``gold_accuracy`` < ``MIN_GOLD_ACCURACY`` (0.6) with ``gold_n`` >= ``MIN_GOLD`` (10 judgements). With 3 labels
       a random clicker scores ~1/3 and an always-left clicker ~1/2; a careful one > 0.8 on gold pairs (chosen to be
       clear). P(careful annotator at p = 0.8 scores < 0.6 in 10 judgements) = 3 %, in 20 = 0.3 %.
    2. ``|left_share - 0.5|`` > ``MAX_LEFT_DEVIATION`` (0.3, i.e. outside [0.2, 0.8]) with >= ``MIN_DECISIVE`` (20)
       decisive answers: at p = 0.5, P(outside) < 0.3 % for n = 20 and falls fast with n.
    3. ``fast_share`` > ``MAX_FAST_SHARE`` (0.5) with >= ``MIN_TIMED`` (10) timed annotations.
    An excluded annotator's annotations are dropped from aggregation; ``sr4k aggregate`` then recomputes the
    preferences, Dawid–Skene and the rankings without them (``alpha_kept`` is alpha recomputed the same way).
    ``--exclude EMAIL`` adds annotators by hand; ``--no-policy`` turns the automatic rules off.

Agreement per criterion
    - Krippendorff's alpha, nominal (``krippendorff.alpha``; labels a/b/tie, units = pairs, coders = annotators):
      alpha = 1 - D_o / D_e from the coincidence matrix of pairable values; pairs with one answer do not count.
      None when undefined (no pair with two answers, or a single value throughout: D_e = 0).
    - Cohen's kappa for every two annotators who share at least one pair: kappa = (p_o - p_e) / (1 - p_e) over the
      pairs both answered, p_o the share of equal answers, p_e = sum_k p1_k p2_k from each annotator's own label
      shares on those pairs (Cohen 1960; equal to ``sklearn.metrics.cohen_kappa_score``). None when p_e = 1 (both
      gave one and the same label throughout: kappa is 0/0).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pyarrow.parquet as pq

from pipelines.store.workspace import Workspace
from schemas.labels import CRITERIA, LABEL_VALUES, AnnotationRec, LabelTaskRec

FAST_SECONDS = 3.0
MIN_GOLD = 10
MIN_GOLD_ACCURACY = 0.6
MIN_DECISIVE = 20
MAX_LEFT_DEVIATION = 0.3
MIN_TIMED = 10
MAX_FAST_SHARE = 0.5
POLICY = {
    "fast_seconds": FAST_SECONDS,
    "min_gold": MIN_GOLD,
    "min_gold_accuracy": MIN_GOLD_ACCURACY,
    "min_decisive": MIN_DECISIVE,
    "max_left_deviation": MAX_LEFT_DEVIATION,
    "min_timed": MIN_TIMED,
    "max_fast_share": MAX_FAST_SHARE,
}


# ---------------------------------------------------------------------------------------------------- selection


def _current(annotations: Sequence[AnnotationRec]) -> tuple[list[AnnotationRec], int]:
    """(latest annotation per (pair, annotator), after the latest version per annotation id; versions kept)."""
    latest: dict[int, AnnotationRec] = {}
    for a in annotations:
        old = latest.get(a.annotation_id)
        if old is None or (a.updated_at, a.created_at) > (old.updated_at, old.created_at):
            latest[a.annotation_id] = a
    per_cell: dict[tuple[str, str], AnnotationRec] = {}
    for a in latest.values():
        old = per_cell.get((a.pair_id, a.annotator))
        if old is None or (a.updated_at, a.annotation_id) > (old.updated_at, old.annotation_id):
            per_cell[(a.pair_id, a.annotator)] = a
    return sorted(per_cell.values(), key=lambda a: (a.pair_id, a.annotator)), len(latest)


def reason_code(reason: str | None) -> str:
    """The codes of an ``invalid_reason`` without their details: "unknown_choice:consistency=C;missing:naturalness"
    -> "missing+unknown_choice" (the full text stays in the annotations table)."""
    return "+".join(sorted({r.split(":", 1)[0] for r in (reason or "invalid").split(";") if r})) or "invalid"


def current_annotations(annotations: Iterable[AnnotationRec]) -> tuple[list[AnnotationRec], dict[str, Any]]:
    """The annotations that count: latest version per annotation id, latest annotation per (pair, annotator), valid.

    Returns ``(valid, account)``; ``account`` has ``rows``, ``superseded_versions``, ``duplicate_annotations``,
    ``invalid`` (count), ``invalid_by_reason`` (by ``reason_code``), ``invalid_by_annotator`` and ``valid``;
    rows = superseded + duplicate + invalid + valid."""
    rows = list(annotations)
    chosen, n_latest = _current(rows)
    valid = [a for a in chosen if a.valid]
    invalid = [a for a in chosen if not a.valid]
    by_reason = Counter(reason_code(a.invalid_reason) for a in invalid)
    account = {
        "rows": len(rows),
        "superseded_versions": len(rows) - n_latest,
        "duplicate_annotations": n_latest - len(chosen),
        "invalid": len(invalid),
        "invalid_by_reason": dict(sorted(by_reason.items())),
        "invalid_by_annotator": dict(sorted(Counter(a.annotator for a in invalid).items())),
        "valid": len(valid),
    }
    assert account["rows"] == (
        account["superseded_versions"] + account["duplicate_annotations"] + account["invalid"] + account["valid"]
    )
    return valid, account


# ---------------------------------------------------------------------------------------------------- per annotator


def gold_accuracy(valid: Iterable[AnnotationRec], tasks: Iterable[LabelTaskRec]) -> dict[str, tuple[int, int]]:
    """annotator -> (correct, gold_n) over gold judgements (module doc); annotators without gold are absent."""
    gold = {t.pair_id: t for t in tasks if t.is_gold}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in valid:
        t = gold.get(a.pair_id)
        if t is None:
            continue
        for c in CRITERIA:
            truth, answer = getattr(t, f"gold_{c}"), getattr(a, c)
            if truth is not None and answer is not None:
                out[a.annotator][0] += answer == truth
                out[a.annotator][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def left_counts(valid: Iterable[AnnotationRec]) -> dict[str, tuple[int, int]]:
    """annotator -> (decisive answers that chose the left candidate, decisive answers)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in valid:
        for c in CRITERIA:
            answer = getattr(a, c)
            if answer in ("a", "b"):
                out[a.annotator][0] += answer == a.left
                out[a.annotator][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def fast_counts(valid: Iterable[AnnotationRec], seconds: float = FAST_SECONDS) -> dict[str, tuple[int, int]]:
    """annotator -> (annotations faster than ``seconds``, annotations with a lead time)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in valid:
        if a.lead_time is not None and math.isfinite(a.lead_time):
            out[a.annotator][0] += a.lead_time < seconds
            out[a.annotator][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def _plurality(labels: Iterable[str]) -> str | None:
    top = Counter(labels).most_common()
    if not top or (len(top) > 1 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def peer_agreement(valid: Sequence[AnnotationRec]) -> dict[str, float | None]:
    """annotator -> share of answers equal to the other annotators' strict plurality on the same pair/criterion."""
    by_pair: dict[str, list[AnnotationRec]] = defaultdict(list)
    for a in valid:
        by_pair[a.pair_id].append(a)
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for group in by_pair.values():
        for a in group:
            for c in CRITERIA:
                mine = getattr(a, c)
                others = _plurality(getattr(o, c) for o in group if o is not a and getattr(o, c) is not None)
                if mine is not None and others is not None:
                    hits[a.annotator][0] += mine == others
                    hits[a.annotator][1] += 1
    return {k: (v[0] / v[1] if v[1] else None) for k, v in hits.items()}


def exclusions(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """annotator -> reason, by the policy in the module doc, from ``annotator_stats``' rows."""
    out = {}
    for who, s in stats.items():
        why = []
        if s["gold_n"] >= MIN_GOLD and s["gold_accuracy"] < MIN_GOLD_ACCURACY:
            why.append(f"gold_accuracy {s['gold_accuracy']:.2f} < {MIN_GOLD_ACCURACY} over {s['gold_n']} judgements")
        if s["decisive_n"] >= MIN_DECISIVE and abs(s["left_share"] - 0.5) > MAX_LEFT_DEVIATION:
            why.append(
                f"left_share {s['left_share']:.2f} outside [{0.5 - MAX_LEFT_DEVIATION:.1f}, "
                f"{0.5 + MAX_LEFT_DEVIATION:.1f}] over {s['decisive_n']} answers"
            )
        if s["timed_n"] >= MIN_TIMED and s["fast_share"] > MAX_FAST_SHARE:
            why.append(f"fast_share {s['fast_share']:.2f} > {MAX_FAST_SHARE} (< {FAST_SECONDS:g} s)")
        if why:
            out[who] = "; ".join(why)
    return out


def annotator_stats(
    annotations: Sequence[AnnotationRec],
    tasks: Sequence[LabelTaskRec],
    exclude: Iterable[str] = (),
    policy: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per annotator: n (current annotations, valid or not), n_invalid, gold_n, gold_accuracy, left_share,
    decisive_n, fast_share, timed_n, peer_agreement, excluded, reason. ``exclude`` names annotators excluded by
    hand (reason "excluded by hand"); ``policy=False`` turns the automatic rules off."""
    valid, account = current_annotations(annotations)
    invalid = account["invalid_by_annotator"]
    gold, left, fast, peer = gold_accuracy(valid, tasks), left_counts(valid), fast_counts(valid), peer_agreement(valid)
    n_valid = Counter(a.annotator for a in valid)
    stats = {}
    for who in sorted(set(n_valid) | set(invalid)):
        g, lc, fc = gold.get(who, (0, 0)), left.get(who, (0, 0)), fast.get(who, (0, 0))
        stats[who] = {
            "n": n_valid[who] + invalid.get(who, 0),
            "n_invalid": invalid.get(who, 0),
            "gold_n": g[1],
            "gold_accuracy": g[0] / g[1] if g[1] else None,
            "decisive_n": lc[1],
            "left_share": lc[0] / lc[1] if lc[1] else None,
            "timed_n": fc[1],
            "fast_share": fc[0] / fc[1] if fc[1] else None,
            "peer_agreement": peer.get(who),
            "excluded": False,
            "reason": None,
        }
    flagged = exclusions(stats) if policy else {}
    if unknown := sorted(set(exclude) - stats.keys()):
        raise ValueError(
            f"cannot exclude {', '.join(unknown)}: not an annotator here (annotators: {', '.join(stats) or 'none'})"
        )
    for who in exclude:
        flagged[who] = "; ".join(filter(None, ["excluded by hand", flagged.get(who)]))
    for who, reason in flagged.items():
        if who in stats:
            stats[who]["excluded"], stats[who]["reason"] = True, reason
    return stats


# ---------------------------------------------------------------------------------------------------- agreement


def _codes(valid: Sequence[AnnotationRec], criterion: str) -> tuple[list[str], list[str], np.ndarray]:
    """(annotators, pairs, matrix annotators x pairs of label codes 0/1/2 = a/b/tie, nan = no answer)."""
    who = sorted({a.annotator for a in valid})
    pairs = sorted({a.pair_id for a in valid})
    wi, pi = {w: k for k, w in enumerate(who)}, {p: k for k, p in enumerate(pairs)}
    m = np.full((len(who), len(pairs)), np.nan)
    for a in valid:
        v = getattr(a, criterion)
        if v is not None:
            m[wi[a.annotator], pi[a.pair_id]] = LABEL_VALUES.index(v)
    return who, pairs, m


def krippendorff_alpha(valid: Sequence[AnnotationRec], criterion: str) -> float | None:
    """Nominal Krippendorff's alpha of one criterion over current valid annotations (None when undefined)."""
    _, _, m = _codes(valid, criterion)
    if m.size == 0 or not np.any(np.sum(~np.isnan(m), axis=0) >= 2):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        value = krippendorff.alpha(m, level_of_measurement="nominal", value_domain=[0.0, 1.0, 2.0])
    return float(value) if math.isfinite(value) else None


def cohen_kappa(x: Sequence[str], y: Sequence[str]) -> float | None:
    """Cohen's kappa of two equally long label lists (module doc); None when p_e = 1 or the lists are empty."""
    if len(x) != len(y):
        raise ValueError("cohen_kappa needs two label lists of the same length")
    n = len(x)
    if n == 0:
        return None
    p_o = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    p_e = sum(cx[k] * cy[k] for k in cx) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def pairwise_kappa(valid: Sequence[AnnotationRec]) -> tuple[dict[str, dict[str, float | None]], dict[str, int]]:
    """({"<a>|<b>": {criterion: kappa}}, {"<a>|<b>": shared pairs}) for every two annotators (sorted, a < b) who
    answered at least one common pair."""
    answers: dict[str, dict[str, AnnotationRec]] = defaultdict(dict)
    for a in valid:
        answers[a.annotator][a.pair_id] = a
    kappa, shared = {}, {}
    for u, v in combinations(sorted(answers), 2):
        common = sorted(answers[u].keys() & answers[v].keys())
        if not common:
            continue
        key = f"{u}|{v}"
        shared[key] = len(common)
        kappa[key] = {}
        for c in CRITERIA:
            both = [(getattr(answers[u][p], c), getattr(answers[v][p], c)) for p in common]
            both = [(x, y) for x, y in both if x is not None and y is not None]
            kappa[key][c] = cohen_kappa([x for x, _ in both], [y for _, y in both])
    return kappa, shared


# ---------------------------------------------------------------------------------------------------- workspace


def read_records(ws: Workspace, table: str, cls: type) -> list[Any]:
    """All rows of ``tables/<table>/part-*.parquet`` as ``cls`` records (empty when the table has no parts)."""
    parts = sorted(ws.table_dir(table).glob("part-*.parquet"))
    names = list(cls.__dataclass_fields__)
    rows = []
    for part in parts:
        t = pq.read_table(part)
        missing = [n for n in names if n not in t.column_names and n != "schema_version"]
        if missing:
            raise ValueError(f"{part} lacks columns {missing}: it was not written with the {table} schema")
        rows += [cls(**{n: r[n] for n in names if n in r}) for r in t.to_pylist()]
    return rows


def load_labels(workspace: str | Path) -> tuple[list[AnnotationRec], list[LabelTaskRec]]:
    """The workspace's annotations and label tasks; a clear error when nothing was pulled yet."""
    ws = Workspace(workspace)
    if not ws.root.is_dir():
        raise FileNotFoundError(f"workspace {ws.root} does not exist")
    anns = read_records(ws, "annotations", AnnotationRec)
    if not anns:
        raise FileNotFoundError(
            f"no annotations in {ws.root / 'tables' / 'annotations'}: run `sr4k label pull` "
            "after annotators have worked on the pushed tasks"
        )
    return anns, read_records(ws, "label_tasks", LabelTaskRec)


def qc_report(
    annotations: Sequence[AnnotationRec],
    tasks: Sequence[LabelTaskRec],
    exclude: Iterable[str] = (),
    policy: bool = True,
) -> dict[str, Any]:
    """The QC summary of these records (what ``qc_summary`` returns for a workspace)."""
    valid, account = current_annotations(annotations)
    stats = annotator_stats(annotations, tasks, exclude, policy)
    excluded = sorted(w for w, s in stats.items() if s["excluded"])
    kept = [a for a in valid if a.annotator not in set(excluded)]
    kappa, shared = pairwise_kappa(valid)
    return {
        "annotators": stats,
        "alpha": {c: krippendorff_alpha(valid, c) for c in CRITERIA},
        "alpha_kept": {c: krippendorff_alpha(kept, c) for c in CRITERIA},
        "kappa": kappa,
        "kappa_shared_pairs": shared,
        "excluded": excluded,
        "account": account,
        "policy": dict(POLICY, automatic=policy),
    }


def qc_summary(workspace: str | Path, exclude: Iterable[str] = (), policy: bool = True) -> dict[str, Any]:
    """QC of a workspace: ``annotators`` {email: {n, gold_n, gold_accuracy, left_share, fast_share, excluded, reason,
    ...}}, ``alpha`` {criterion: float | None} (all annotators), ``alpha_kept`` (after exclusions), ``kappa``
    {"<a>|<b>": {criterion: float | None}}, ``kappa_shared_pairs``, ``excluded``, ``account`` (every annotation row
    accounted for) and ``policy`` (the thresholds)."""
    anns, tasks = load_labels(workspace)
    return qc_report(anns, tasks, exclude, policy)
