"""Dataset cards of a release: the Hugging Face front matter, the loading snippet and the body of each kind's README.md
(tables of counts, the Bradley–Terry ranking with intervals, label and agreement plots for preferences; the curation
account for a trainset; per-item sizes for a benchmark). Plots are PNGs under the release's ``plots/``, written with
matplotlib's Agg backend; the cards reference them by relative path."""

from __future__ import annotations

import io
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines.store.workspace import (
    write_bytes_atomic,
)
from schemas.labels import CRITERIA

# ---------------------------------------------------------------------------------------------------- card frame


def _size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return label
    return "1M<n<10M"


def front_matter(name: str, version: str, kind: str, split: str, n: int, tags: list[str]) -> str:
    tag_lines = "".join(f"- {t}\n" for t in ["super-resolution", "4k", "sr4k", *tags])
    return (
        f"---\npretty_name: {name} {version}\ntask_categories:\n- image-to-image\ntags:\n{tag_lines}"
        f"size_categories:\n- {_size_category(n)}\nconfigs:\n- config_name: default\n  data_files:\n"
        f'  - split: {split}\n    path: "{split}-*.tar"\n---\n\n'
    )


def loading(split: str) -> str:
    return f"""
## Loading

```python
import glob, webdataset as wds
ds = wds.WebDataset(sorted(glob.glob("{split}-*.tar")), shardshuffle=False).decode("pil")

import datasets  # Hugging Face
ds = datasets.load_dataset("webdataset", data_files={{"{split}": "{split}-*.tar"}}, split="{split}")
```

`manifest.json` lists every shard with its sha256 (check with `sha256sum`); `index.parquet` has one row per sample
(key, shard, and the sample's JSON fields): `duckdb -c "select * from 'index.parquet' limit 5"`.
"""


# ---------------------------------------------------------------------------------------------------- card bodies


def _md(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _figure(width: float = 6.0, height: float = 3.5):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, plots: Path, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp: rebuilds are byte-identical
    write_bytes_atomic(plots / name, buf.getvalue())
    return f"plots/{name}"


def preferences_card(metas: list[dict[str, Any]], ranking: dict[str, Any], plots: Path) -> tuple[str, list[str]]:
    qc, report, agreement = ranking["qc"], ranking["report"], ranking["agreement"]
    people = sorted(qc["annotators"])
    alias = {who: f"annotator {k}" for k, who in enumerate(people, 1)}
    kept = [w for w in people if not qc["annotators"][w]["excluded"]]
    models = sorted({m for r in metas for m in (r["model_a"], r["model_b"])})
    body = [
        "## Contents\n\n",
        _md(
            ["what", "count"],
            [
                ["pairs (samples)", len(metas)],
                ["LR images", len({r["lr_key"] for r in metas})],
                ["models", len(models)],
                ["annotators (kept / excluded)", f"{len(kept)} / {len(people) - len(kept)}"],
                ["votes used", report["used"]],
                ["invalid annotations (not used)", report["invalid"]],
                ["votes of excluded annotators (not used)", report["excluded_annotator_votes"]],
                [
                    "pairs annotated but without a vote on every criterion",
                    sum(report["pairs_without_vote_on"].values()),
                ],
                ["gold pairs", report["gold_pairs"]],
            ],
        ),
    ]
    body += [
        "\n## Labels\n\n",
        "Labels are in candidate terms: `a` = the output of `model_a` is better, `b` = "
        "`model_b`, `tie` = neither (the on-screen side was randomised and is mapped back).\n\n",
    ]
    lab = {c: Counter(r[c] for r in metas) for c in CRITERIA}
    body.append(_md(["criterion", "a", "b", "tie"], [[c, lab[c]["a"], lab[c]["b"], lab[c]["tie"]] for c in CRITERIA]))
    kappas = {c: [v[c] for v in qc["kappa"].values() if v.get(c) is not None] for c in CRITERIA}
    body += [
        "\n## Agreement\n\n",
        _md(
            [
                "criterion",
                "Krippendorff α (all)",
                "α (kept)",
                "mean pair agreement",
                "unanimous pairs",
                "mean DS posterior",
                "Cohen κ median [min, max]",
            ],
            [
                [
                    c,
                    qc["alpha"][c],
                    qc["alpha_kept"][c],
                    agreement[c]["mean_agreement"],
                    agreement[c]["unanimous_share"],
                    agreement[c]["mean_ds_posterior"],
                    f"{statistics.median(kappas[c]):.3f} [{min(kappas[c]):.3f}, {max(kappas[c]):.3f}]"
                    if kappas[c]
                    else None,
                ]
                for c in CRITERIA
            ],
        ),
    ]
    names = [_agreement_plot(metas, plots), _labels_plot(lab, plots)]
    body.append(f"\n![per-pair agreement]({names[0]})\n![labels]({names[1]})\n")
    body.append(
        "\n## Model ranking (Bradley–Terry)\n\nOne comparison per labelled pair (ties are dropped: BT has "
        "no tie outcome); θ from `choix.ilsr_pairwise` (α = {a}), 95 % interval θ ± 1.96 × bootstrap std "
        "({b} resamples of the pairs).\n".format(a=report["bt"]["alpha"], b=report["bt"]["bootstrap"])
    )
    for c in CRITERIA:
        rows = ranking["rankings"][c]
        table = [[r["rank"], r["model"], r["theta"], _ci(r), r["wins"], r["losses"], r["ties"]] for r in rows]
        body += [f"\n### {c}\n\n", _md(["rank", "model", "θ", "95 % CI", "wins", "losses", "ties"], table)]
        names.append(_ranking_plot(c, rows, plots))
        body.append(f"\n![{c} ranking]({names[-1]})\n")
    body += [
        "\n## Annotators (pseudonymised)\n\n",
        _md(
            [
                "annotator",
                "annotations",
                "gold judgements",
                "gold accuracy",
                "left share",
                "fast share",
                "excluded",
                "reason",
            ],
            [
                [
                    alias[w],
                    s["n"],
                    s["gold_n"],
                    s["gold_accuracy"],
                    s["left_share"],
                    s["fast_share"],
                    "yes" if s["excluded"] else "no",
                    s["reason"],
                ]
                for w, s in ((w, qc["annotators"][w]) for w in people)
            ],
        ),
    ]
    pol = qc["policy"]
    body.append(
        "\n## How the labels were made\n\nAnnotators compared two SR outputs of the same LR image (shown with it) "
        "on two criteria: *consistency* (is the output faithful to the LR input?) and *naturalness* (does it look "
        "like a real high-resolution photograph?). Per pair and criterion the label is the strict plurality of the "
        "votes; without one it is `tie`. `<criterion>_agreement` is the share of votes equal to the label; "
        f"`<criterion>_ds` the Dawid–Skene posterior of the label (crowd-kit, {report['ds']['n_iter']} iterations, "
        f"tol {report['ds']['tol']}). Annotators were excluded when their gold accuracy was below "
        f"{pol['min_gold_accuracy']} (after {pol['min_gold']} gold judgements), their share of left choices was "
        f"outside 0.5 ± {pol['max_left_deviation']} (after {pol['min_decisive']} decisive answers), or more than "
        f"{pol['max_fast_share']:.0%} of their answers took under {pol['fast_seconds']} s; the labels were then "
        "recomputed without them.\n"
    )
    body.append(
        "\n## Fields\n\nEach sample: `lr.png`, `a.png`, `b.png` and `json` with pair_id, lr_key, model_a, "
        "model_b, version_a, version_b, and per criterion the label, votes_a / votes_b / votes_tie, agreement "
        "and ds; n_annotators, both_unusable_votes (votes saying both outputs are unusable).\n"
    )
    return "".join(body), names


def _ci(r: dict[str, Any]) -> str:
    if r["ci_low"] is None or r["ci_high"] is None:
        return "–"
    return f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _ranking_plot(criterion: str, rows: list[dict[str, Any]], plots: Path) -> str:
    rows = [r for r in rows if r["ci_low"] is not None and r["ci_high"] is not None]
    fig = _figure(6, 0.4 * len(rows) + 1.2)
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]
    theta = [r["theta"] for r in rows]
    err = [[r["theta"] - r["ci_low"] for r in rows], [r["ci_high"] - r["theta"] for r in rows]]
    ax.errorbar(theta, y, xerr=err, fmt="o", capsize=3)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.set_xlabel("Bradley–Terry θ (95 % CI)")
    ax.set_title(f"{criterion}: model ranking")
    return _save(fig, plots, f"ranking_{criterion}.png")


def _labels_plot(lab: dict[str, Counter], plots: Path) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    for k, v in enumerate(("a", "b", "tie")):
        ax.bar([i + 0.27 * (k - 1) for i in range(len(CRITERIA))], [lab[c][v] for c in CRITERIA], 0.27, label=v)
    ax.set_xticks(range(len(CRITERIA)), list(CRITERIA))
    ax.set_ylabel("pairs")
    ax.legend(title="label")
    return _save(fig, plots, "labels.png")


def _agreement_plot(metas: list[dict[str, Any]], plots: Path) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist([[r[f"{c}_agreement"] for r in metas] for c in CRITERIA], bins=10, range=(0, 1), label=list(CRITERIA))
    ax.set_xlabel("share of votes equal to the pair's label")
    ax.set_ylabel("pairs")
    ax.legend()
    return _save(fig, plots, "agreement.png")


def _hist(values: list[float], xlabel: str, plots: Path, name: str) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(values, bins=min(30, max(5, len(values) // 3)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    return _save(fig, plots, name)


def trainset_card(metas: list[dict[str, Any]], account: dict[str, Any] | None, plots: Path) -> tuple[str, list[str]]:
    hr = Counter(f"{m.get('hr_width')}x{m.get('hr_height')}" for m in metas)
    lr = Counter(f"{m.get('lr_width')}x{m.get('lr_height')}" for m in metas)
    body = [
        "## Contents\n\nEach sample: `hr.png` (an HR crop of a curated photograph), `lr.png` (its synthetic "
        "degradation; every sampled parameter and the seed are in `json`) and `json` (provenance: source URI and "
        "sha256, crop box, degradation, step versions).\n\n",
        _md(
            ["what", "count"],
            [
                ["samples (HR/LR pairs)", len(metas)],
                ["source images", len({m.get("image_key") for m in metas})],
                ["scale", ", ".join(str(s) for s in sorted({m.get("scale") for m in metas}))],
                *[[f"HR {k}", v] for k, v in sorted(hr.items())],
                *[[f"LR {k}", v] for k, v in sorted(lr.items())],
            ],
        ),
    ]
    names = []
    scores = [float(m["detail_score"]) for m in metas if m.get("detail_score") is not None]
    if scores:
        names.append(_hist(scores, "crop detail score", plots, "detail_score.png"))
        body.append(f"\n![detail score]({names[-1]})\n")
    if account:
        body += [
            "\n## Curation account\n\nEvery input was kept or rejected with a reason: "
            f"seen {account['seen']}, kept {account['kept']}.\n\n",
            _md(["stage:reason", "rejected"], [[k, v] for k, v in account["rejected_by_reason"].items()]),
        ]
        if account["rejected_by_reason"]:
            fig = _figure()
            ax = fig.add_subplot()
            items = list(account["rejected_by_reason"].items())
            ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1])
            ax.set_xlabel("inputs rejected")
            names.append(_save(fig, plots, "rejects.png"))
            body.append(f"\n![rejects]({names[-1]})\n")
    return "".join(body), names


def benchmark_card(metas: list[dict[str, Any]], bench: dict[str, Any], plots: Path) -> tuple[str, list[str]]:
    with_hr = sum(1 for m in metas if m.get("hr_path"))
    body = [
        f"## Contents\n\nBenchmark `{bench.get('name')}` of kind `{bench.get('kind')}` (scale "
        f"{bench.get('scale')}). Each sample: `lr.png`, `hr.png` when the benchmark has ground truth, and `json` "
        "(the index row: sizes, scale, seed and degradation parameters for synthetic items, source).\n\n",
        _md(
            ["what", "count"],
            [
                ["items", len(metas)],
                ["with HR", with_hr],
                ["distinct LR sizes", len({(m["lr_width"], m["lr_height"]) for m in metas})],
            ],
        ),
    ]
    fig = _figure(4.5, 4)
    ax = fig.add_subplot()
    ax.scatter([m["lr_width"] for m in metas], [m["lr_height"] for m in metas])
    ax.set_xlabel("LR width (px)")
    ax.set_ylabel("LR height (px)")
    ax.set_title("LR sizes")
    names = [_save(fig, plots, "lr_sizes.png")]
    body.append(f"\n![LR sizes]({names[0]})\n")
    return "".join(body), names
