"""Held-out evaluation of a judge on human preference pairs: accuracy per criterion, position consistency, baselines.

Protocol (``evaluate_pairs``): every pair is judged in both screen orders, (A=a, B=b) and (A=b, B=a); verdicts are
mapped back to candidate terms and compared with the human label ("a" | "b" | "tie").

- ``accuracy``: hits / (2·pairs) over both orders; a malformed answer is a miss. ``accuracy_ab`` / ``accuracy_ba``
  per order show a position bias (a judge that always answers "A" scores the share of "a" labels on ab and of "b"
  labels on ba).
- ``weighted_accuracy``: Σ agreement·hit / Σ agreement — contested pairs (low annotator agreement) count less.
- ``position_consistency``: share of pairs whose two verdicts agree in candidate terms (both well-formed).
- ``malformed``: share of answers that did not parse.

Baselines on the same pairs (no learning; each predicts the candidate with the higher value, "tie" if equal):
``lr_psnr`` — fidelity to the input: PSNR-Y (``pipelines.bench.metrics.psnr_y``) between the LR and the candidate
re-downscaled to the LR size (cv2 INTER_AREA, a box filter that averages each scale×scale block); ``sharpness`` —
the curation detail ratio (``pipelines.curate.filters.measure``); ``hf_energy`` — share of spectral energy above
half-Nyquist (``pipelines.bench.metrics.hf_energy``); ``majority`` — always the most frequent label of the set (chance
level of a constant answer).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.bench.metrics import hf_energy, lr_consistency_psnr
from pipelines.curate import filters
from pipelines.store.workspace import write_bytes_atomic, write_json_atomic
from schemas.labels import CRITERIA
from training.reward.data import PreferenceSample
from training.reward.examples import to_candidate

lr_psnr = lr_consistency_psnr  # fidelity to the input (higher = more faithful); the one definition, in bench.metrics


def sharpness(lr: np.ndarray, cand: np.ndarray) -> float:
    return float(filters.measure(cand, photo_prior=False).sharpness)


def hf(lr: np.ndarray, cand: np.ndarray) -> float:
    return hf_energy(cand)


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "lr_psnr": lr_psnr,
    "sharpness": sharpness,
    "hf_energy": hf,
}


def _pick(va: float, vb: float, tol: float = 1e-9) -> str:
    return "tie" if abs(va - vb) <= tol else ("a" if va > vb else "b")


def _judge_many(judge: Any, triples: list[tuple[Any, Any, Any]]) -> list[dict[str, str] | None]:
    batch = getattr(judge, "judge_batch", None)
    return list(batch(triples)) if batch is not None else [judge(*t) for t in triples]


def _verdict(v: dict[str, str] | None, c: str, swap: bool) -> str | None:
    if not v or v.get(c) not in ("A", "B", "tie"):
        return None
    return to_candidate(v[c], swap)


def evaluate_pairs(
    judge: Any,
    samples: Sequence[PreferenceSample],
    baselines: bool = True,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Judge every pair in both orders and score it against the labels; returns the report dict (module docs)."""
    rows = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        loaded = [s.load() for s in chunk]
        triples = [t for lr, a, b in loaded for t in ((lr, a, b), (lr, b, a))]
        verdicts = _judge_many(judge, triples)
        for k, (s, (lr, a, b)) in enumerate(zip(chunk, loaded, strict=True)):
            row: dict[str, Any] = {"pair_id": s.rec.pair_id}
            for c in CRITERIA:
                row[c] = {
                    "label": getattr(s.rec, c),
                    "agreement": float(getattr(s.rec, f"{c}_agreement")),
                    "ab": _verdict(verdicts[2 * k], c, False),
                    "ba": _verdict(verdicts[2 * k + 1], c, True),
                }
            if baselines:
                lr_np, a_np, b_np = (np.asarray(x) for x in (lr, a, b))
                row["baselines"] = {n: _pick(f(lr_np, a_np), f(lr_np, b_np)) for n, f in BASELINES.items()}
            rows.append(row)
        if progress:
            progress(len(chunk))
    return summarise(rows, baselines)


def summarise(rows: list[dict[str, Any]], baselines: bool = True) -> dict[str, Any]:
    n = len(rows)
    report: dict[str, Any] = {"n_pairs": n, "judge": {}, "baselines": {}, "pairs": rows}
    for c in CRITERIA:
        lab = [r[c]["label"] for r in rows]
        w = np.array([r[c]["agreement"] for r in rows])
        ab = np.array([r[c]["ab"] == r[c]["label"] for r in rows], float)
        ba = np.array([r[c]["ba"] == r[c]["label"] for r in rows], float)
        ok = [r[c]["ab"] is not None and r[c]["ba"] is not None for r in rows]
        same = [r[c]["ab"] == r[c]["ba"] for r, o in zip(rows, ok, strict=True) if o]
        malformed = sum((r[c]["ab"] is None) + (r[c]["ba"] is None) for r in rows)
        report["judge"][c] = {
            "accuracy": float((ab.sum() + ba.sum()) / (2 * n)) if n else float("nan"),
            "accuracy_ab": float(ab.mean()) if n else float("nan"),
            "accuracy_ba": float(ba.mean()) if n else float("nan"),
            "weighted_accuracy": float((w * (ab + ba)).sum() / (2 * w.sum())) if w.sum() > 0 else float("nan"),
            "position_consistency": float(np.mean(same)) * (len(same) / n) if n and same else 0.0,
            "malformed": malformed / (2 * n) if n else float("nan"),
            "label_share": {k: lab.count(k) / n for k in ("a", "b", "tie")} if n else {},
        }
        majority = Counter(lab).most_common(1)[0][0] if n else "a"
        report["baselines"].setdefault("majority", {})[c] = lab.count(majority) / n if n else float("nan")
        if baselines:
            for name in BASELINES:
                hits = np.array([r["baselines"][name] == r[c]["label"] for r in rows], float)
                report["baselines"].setdefault(name, {})[c] = float(hits.mean()) if n else float("nan")
    return report


def report_markdown(report: dict[str, Any], title: str = "RefReward evaluation") -> str:
    lines = [f"# {title}", "", f"{report['n_pairs']} held-out pairs, each judged in both A/B orders.", ""]
    head = "| criterion | accuracy | acc (a first) | acc (b first) | weighted | position consistency | malformed |"
    lines += [head, "|---|---|---|---|---|---|---|"]
    for c, m in report["judge"].items():
        lines.append(
            f"| {c} | {m['accuracy']:.3f} | {m['accuracy_ab']:.3f} | {m['accuracy_ba']:.3f} | "
            f"{m['weighted_accuracy']:.3f} | {m['position_consistency']:.3f} | {m['malformed']:.3f} |"
        )
    lines += [
        "",
        "Baselines (accuracy on the same pairs):",
        "",
        "| baseline | " + " | ".join(CRITERIA) + " |",
        "|---|" + "---|" * len(CRITERIA),
    ]
    for name, accs in report["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(f"{accs[c]:.3f}" for c in CRITERIA) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``eval.json`` (everything, per pair too) and ``eval.md`` (the tables) under ``out_dir``."""
    out = Path(out_dir)
    write_json_atomic(out / "eval.json", json.loads(json.dumps(report, default=float)))
    write_bytes_atomic(out / "eval.md", report_markdown(report).encode())
    return out / "eval.json", out / "eval.md"
