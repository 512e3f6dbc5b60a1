"""Aggregation of pairwise human rankings: one preference per pair, and a Bradley–Terry ranking of the models.

``aggregate`` is pure (annotations + label tasks + pairs -> ``PreferenceRec`` list + rankings + an account of every
annotation row); ``aggregate_workspace`` reads the workspace's tables, applies the QC exclusion policy
(``labelling.qc``), and writes ``tables/preferences/part-all.parquet`` (replacing the previous one, atomically) and
``labelling/ranking.json``. ``sr4k aggregate`` runs it.

Votes
    The votes of a pair are the current valid annotations (``qc.current_annotations``: latest version, one per
    annotator) of the annotators not excluded. Per criterion a vote is "a", "b" or "tie" in candidate terms; an
    annotation without an answer for a criterion gives no vote there. ``both_unusable_votes`` counts the votes that
    flagged both outputs as unusable (their criterion answers still count: the annotator still judged which is less
    bad).

Per-pair label (majority with tie handling)
    The label is the strict plurality of the votes over {a, b, tie}; with no strict plurality (2 a vs 2 b, 1 a vs 1
    tie, 1 a / 1 b / 1 tie ...) the label is "tie": the votes do not order the pair. ``agreement`` = votes equal to
    the label / votes (so a "tie" label from a 1-1 split has agreement 0, a unanimous "a" 1). A pair with no vote on
    some criterion (all its annotations invalid or excluded) has no preference row; it is counted in the report.

Dawid–Skene
    Per criterion, ``crowdkit.aggregation.DawidSkene(n_iter=100, tol=1e-5)`` (Dawid & Skene 1979: EM over a
    per-annotator 3x3 confusion matrix and class priors, initialised with majority vote) over all votes of that
    criterion (worker = annotator, task = pair, label in {a, b, tie}). ``<criterion>_ds`` is the posterior
    probability DS gives the *majority* label, so a low value marks a pair where the annotators' track records
    disagree with the head count; the report counts pairs whose DS argmax differs from the majority label.

Bradley–Terry ranking (ties)
    Per criterion, one comparison per labelled pair: label "a" -> (model_a beats model_b), "b" -> the reverse. A tie
    is dropped from the fit: Bradley–Terry has no tie outcome, and counting it as a win each way would add two
    comparisons the annotators never made and shrink the scores (the Rao–Kupper / Davidson extensions model ties,
    choix does not). Ties are counted in the ranking rows. The fit is ``pairs.bradley_terry.fit_bradley_terry``:
    theta = ``choix.ilsr_pairwise(n_models, data, alpha=BT_ALPHA)`` exactly (models sorted by name, data = (winner
    index, loser index) in pair order), centred; std from ``bootstrap`` resamples of the comparisons (Efron 1979),
    the 95 % interval theta +- 1.96 std (normal interval from the bootstrap standard error, Efron & Tibshirani 1993,
    ch. 13). Per-pair labels rather than single votes are the unit: the votes of one pair share the same two images,
    so resampling votes would treat correlated answers as independent and understate the uncertainty.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from crowdkit.aggregation import DawidSkene

from labelling import qc
from pipelines.pairs.bradley_terry import BT_ALPHA, BTEstimates, covariance_record, fit_bradley_terry
from pipelines.store.workspace import Workspace, write_json_atomic, write_table
from schemas.labels import CRITERIA, LABEL_VALUES, PREFERENCES, AnnotationRec, LabelTaskRec, PreferenceRec

AGGREGATE_VERSION = "aggregate/1"
DS_N_ITER = 100
DS_TOL = 1e-5
Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


@dataclass(slots=True)
class Aggregate:
    """What ``aggregate`` returns: preference rows, per-criterion rankings, and the account of the inputs."""

    preferences: list[PreferenceRec]
    rankings: dict[str, list[dict[str, Any]]]
    report: dict[str, Any] = field(default_factory=dict)
    #: per criterion {"models": [...], "matrix": [[...]]}: the bootstrap covariance of theta (None with < 2 resamples),
    #: what ``sr4k pairs build --strategy active --estimates labelling/ranking.json`` needs for var(theta_a - theta_b)
    covariance: dict[str, dict[str, Any]] = field(default_factory=dict)


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def majority(votes: Mapping[str, int]) -> str:
    """Strict plurality over a/b/tie, else "tie" (module doc). ``votes``: label -> count, at least one vote."""
    counts = sorted(((votes.get(v, 0), v) for v in LABEL_VALUES), reverse=True)
    if counts[0][0] == 0:
        raise ValueError("majority of no votes")
    return counts[0][1] if counts[0][0] > counts[1][0] else "tie"


def dawid_skene(votes: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """(annotator, pair_id, label) votes -> posterior per pair (rows) and label (columns a, b, tie)."""
    df = pd.DataFrame(votes, columns=["worker", "task", "label"])
    probas = DawidSkene(n_iter=DS_N_ITER, tol=DS_TOL).fit(df).probas_
    return probas.reindex(columns=list(LABEL_VALUES), fill_value=0.0)


def bt_fit(
    prefs: Sequence[PreferenceRec], criterion: str, models: Sequence[str], bootstrap: int = 200, seed: int = 0
) -> tuple[list[dict[str, Any]], BTEstimates]:
    """Ranking rows (best first: rank, model, theta, std, ci_low, ci_high, wins, losses, ties, comparisons) and the
    fit behind them (with its covariance)."""
    comparisons = []
    tally: dict[str, Counter] = {m: Counter() for m in models}
    for p in prefs:
        label = getattr(p, criterion)
        if label == "tie":
            tally[p.model_a]["ties"] += 1
            tally[p.model_b]["ties"] += 1
            continue
        win, lose = (p.model_a, p.model_b) if label == "a" else (p.model_b, p.model_a)
        comparisons.append((win, lose))
        tally[win]["wins"] += 1
        tally[lose]["losses"] += 1
    est = fit_bradley_terry(comparisons, list(models), bootstrap=bootstrap, seed=seed, alpha=BT_ALPHA)
    rows = []
    for m in models:
        theta, std = est[m]
        half = Z95 * std if math.isfinite(std) else math.inf
        t = tally[m]
        rows.append(
            {
                "model": m,
                "theta": theta,
                "std": std,
                "ci_low": theta - half,
                "ci_high": theta + half,
                "wins": t["wins"],
                "losses": t["losses"],
                "ties": t["ties"],
                "comparisons": t["wins"] + t["losses"],
            }
        )
    rows.sort(key=lambda r: (-r["theta"], r["model"]))
    for k, r in enumerate(rows, 1):
        r["rank"] = k
    return rows, est


def aggregate(
    annotations: Sequence[AnnotationRec],
    tasks: Sequence[LabelTaskRec],
    pairs: Sequence[Any],
    *,
    exclude: Iterable[str] = (),
    lr_paths: Mapping[str, str] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> Aggregate:
    """Preferences and rankings from annotations (module doc). ``pairs``: ``PairRec``s or dicts of the pairs table;
    ``exclude``: annotators whose annotations are dropped; ``lr_paths``: pair_id -> LR image path ("" if absent).
    ``tasks`` are used for the account only (annotations name their pair). The report accounts for every annotation
    row: superseded + duplicate + invalid + excluded + unknown_pair + used = rows."""
    valid, account = qc.current_annotations(annotations)
    excluded = set(exclude)
    by_id = {_get(p, "pair_id"): p for p in pairs}
    votes: dict[str, list[AnnotationRec]] = defaultdict(list)
    n_excluded = n_unknown = 0
    for a in valid:
        if a.annotator in excluded:
            n_excluded += 1
        elif a.pair_id not in by_id:
            n_unknown += 1
        else:
            votes[a.pair_id].append(a)
    ds = {}
    for c in CRITERIA:
        cv = [(a.annotator, a.pair_id, getattr(a, c)) for pid in sorted(votes) for a in votes[pid]]
        cv = [v for v in cv if v[2] is not None]
        ds[c] = dawid_skene(cv) if cv else None
    prefs, no_vote, ds_disagree = [], Counter(), Counter()
    for pid in sorted(votes):
        rec, missing = _preference(by_id[pid], votes[pid], ds, (lr_paths or {}).get(pid, ""))
        if missing:
            no_vote[",".join(missing)] += 1
            continue
        prefs.append(rec)
        for c in CRITERIA:
            if ds[c] is not None and ds[c].loc[pid].idxmax() != getattr(rec, c):
                ds_disagree[c] += 1
    models = sorted({m for p in pairs for m in (_get(p, "model_a"), _get(p, "model_b"))})
    fits = {c: bt_fit(prefs, c, models, bootstrap, seed) for c in CRITERIA}
    rankings = {c: rows for c, (rows, _) in fits.items()}
    covariance = {c: covariance_record(est) for c, (_, est) in fits.items()}
    used = sum(len(v) for v in votes.values())
    report = {
        "version": AGGREGATE_VERSION,
        "annotation_rows": account["rows"],
        "superseded_versions": account["superseded_versions"],
        "duplicate_annotations": account["duplicate_annotations"],
        "invalid": account["invalid"],
        "invalid_by_reason": account["invalid_by_reason"],
        "excluded_annotator_votes": n_excluded,
        "unknown_pair": n_unknown,
        "used": used,
        "excluded_annotators": sorted(excluded),
        "pairs": len(by_id),
        "pairs_annotated": len(votes),
        "preferences": len(prefs),
        "pairs_unannotated": len(by_id) - len(votes),
        "pairs_without_vote_on": dict(no_vote),
        "gold_pairs": sum(t.is_gold for t in tasks),
        "labels": {c: dict(Counter(getattr(p, c) for p in prefs)) for c in CRITERIA},
        "ds_disagrees_with_majority": {c: ds_disagree[c] for c in CRITERIA},
        "lr_unresolved": sum(1 for p in prefs if not p.lr_path),
        "bt": {"alpha": BT_ALPHA, "bootstrap": bootstrap, "seed": seed, "ties": "dropped"},
        "ds": {"n_iter": DS_N_ITER, "tol": DS_TOL},
    }
    parts = (
        "superseded_versions",
        "duplicate_annotations",
        "invalid",
        "excluded_annotator_votes",
        "unknown_pair",
        "used",
    )
    assert sum(report[k] for k in parts) == report["annotation_rows"], report
    return Aggregate(prefs, rankings, report, covariance)


def _preference(
    pair: Any, votes: Sequence[AnnotationRec], ds: Mapping[str, pd.DataFrame | None], lr_path: str
) -> tuple[PreferenceRec | None, list[str]]:
    fields: dict[str, Any] = {}
    missing = []
    for c in CRITERIA:
        n = Counter(getattr(a, c) for a in votes if getattr(a, c) is not None)
        if not n:
            missing.append(c)
            continue
        label = majority(n)
        total = sum(n.values())
        post = ds[c].loc[_get(pair, "pair_id"), label] if ds[c] is not None else None
        fields |= {
            c: label,
            f"{c}_votes_a": n["a"],
            f"{c}_votes_b": n["b"],
            f"{c}_votes_tie": n["tie"],
            f"{c}_agreement": n[label] / total,
            f"{c}_ds": None if post is None else float(post),
        }
    if missing:
        return None, missing
    names = ("pair_id", "lr_key", "model_a", "model_b", "version_a", "version_b", "path_a", "path_b")
    base = {k: str(_get(pair, k)) for k in names}
    rec = PreferenceRec(
        **base,
        lr_path=lr_path,
        **fields,
        n_annotators=len(votes),
        both_unusable_votes=sum(a.both_unusable for a in votes),
    )
    return rec, []


# ---------------------------------------------------------------------------------------------------- workspace


def _relative(ws: Workspace, path: str) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.resolve().relative_to(ws.root))
        except ValueError:
            return str(p)
    return path


def lr_locations(ws: Workspace, lr_set: str) -> dict[str, str]:
    """LR key -> location relative to the workspace: ``benchmarks/<set>/lr/<key>.png`` for a benchmark, or
    ``shards/<set>/<shard>.tar#<key>.lr.png`` (a tar member) for a shard dataset; {} when the set is gone."""
    import tarfile

    import pyarrow.parquet as pq

    bench = ws.bench_dir(lr_set)
    if (bench / "index.parquet").exists():
        rows = pq.read_table(bench / "index.parquet", columns=["key", "lr_path"]).to_pylist()
        return {r["key"]: f"benchmarks/{lr_set}/{r['lr_path']}" for r in rows}
    out = {}
    for shard in sorted(ws.shard_dir(lr_set).glob("*.tar")):
        with tarfile.open(shard) as tf:
            for name in tf.getnames():
                if name.endswith(".lr.png"):
                    out[name.split(".", 1)[0]] = f"shards/{lr_set}/{shard.name}#{name}"
    return out


def _lr_paths(ws: Workspace, pairs: Sequence[Any]) -> dict[str, str]:
    """pair_id -> LR location, through the candidates table (the LR set of candidate A)."""
    cands = qc.read_records(ws, "candidates", _CandidateKey)
    lr_set = {(c.lr_key, c.model, c.model_version): c.lr_set for c in cands}
    cache: dict[str, dict[str, str]] = {}
    out = {}
    for p in pairs:
        s = lr_set.get((p["lr_key"], p["model_a"], p["version_a"]))
        if s is None:
            continue
        if s not in cache:
            cache[s] = lr_locations(ws, s)
        out[p["pair_id"]] = cache[s].get(p["lr_key"], "")
    return out


@dataclass(slots=True)
class _CandidateKey:
    lr_set: str
    lr_key: str
    model: str
    model_version: str


def read_pairs(ws: Workspace) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    parts = sorted(ws.table_dir("pairs").glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no pairs table in {ws.root}: run `sr4k pairs build` (and label them) first")
    rows: dict[str, dict[str, Any]] = {}
    for part in parts:
        for r in pq.read_table(part).to_pylist():
            rows.setdefault(r["pair_id"], r)
    return [rows[k] for k in sorted(rows)]


def aggregate_workspace(
    workspace: str | Path,
    exclude: Iterable[str] | None = None,
    policy: bool = True,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """QC, exclusions (policy + ``exclude``), aggregation; writes ``tables/preferences/part-all.parquet`` and
    ``labelling/ranking.json`` (both atomically, replacing). Returns ranking.json's content plus ``paths``."""
    ws = Workspace(workspace)
    anns, tasks = qc.load_labels(ws.root)
    pairs = read_pairs(ws)
    for p in pairs:
        p["path_a"], p["path_b"] = _relative(ws, p["path_a"]), _relative(ws, p["path_b"])
    report = qc.qc_report(anns, tasks, exclude or (), policy)
    result = aggregate(
        anns, tasks, pairs, exclude=report["excluded"], lr_paths=_lr_paths(ws, pairs), bootstrap=bootstrap, seed=seed
    )
    table = ws.part("preferences", "all")
    write_table(table, result.preferences, PREFERENCES)
    out = {
        "rankings": result.rankings,
        "covariance": result.covariance,
        "report": result.report,
        "qc": report,
        "agreement": _agreement(result.preferences),
    }
    ranking_path = ws.ranking
    write_json_atomic(ranking_path, _jsonable(out))
    return _jsonable(out | {"paths": {"preferences": str(table), "ranking": str(ranking_path)}})


def _agreement(prefs: Sequence[PreferenceRec]) -> dict[str, dict[str, float | None]]:
    """Per criterion: mean per-pair agreement, mean DS posterior, share of unanimous pairs with >= 2 votes."""
    out = {}
    for c in CRITERIA:
        ag = [getattr(p, f"{c}_agreement") for p in prefs]
        post = [v for p in prefs if (v := getattr(p, f"{c}_ds")) is not None]
        multi = [p for p in prefs if p.n_annotators >= 2]
        out[c] = {
            "mean_agreement": sum(ag) / len(ag) if ag else None,
            "mean_ds_posterior": sum(post) / len(post) if post else None,
            "unanimous_share": (
                sum(getattr(p, f"{c}_agreement") == 1.0 for p in multi) / len(multi) if multi else None
            ),
        }
    return out


def _jsonable(x: Any) -> Any:
    """inf/nan -> None (JSON has neither), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x
