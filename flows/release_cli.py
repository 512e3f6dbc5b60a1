"""`sr4k aggregate` and `sr4k release`; `register(app)` adds them to the main typer app (flows/cli.py).

sr4k aggregate [-w WS] [--exclude EMAIL ...] [--no-policy]       QC, exclusions, preferences, BT rankings
sr4k release preferences --name refsr --version 0.1.0 [-w WS]     sharded webdataset + dataset card
sr4k release trainset --name train4k --version 0.1.0 [--dataset D]
sr4k release benchmark --name syn4k --version 0.1.0 [--bench B]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.console import DEFAULT_WORKSPACE, WorkspaceOpt, console, fail, warn

NameOpt = Annotated[str, typer.Option(help="Release name (folder <workspace>/releases/<name>-<version>)")]
VersionOpt = Annotated[str, typer.Option(help="Release version, semantic (e.g. 0.1.0); released versions are final")]
MaxCountOpt = Annotated[int, typer.Option(help="Samples per shard at most")]
MaxBytesOpt = Annotated[int, typer.Option(help="Bytes per shard at most")]


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def aggregate(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Exclude this annotator (e-mail; repeat)", show_default="none")
    ] = None,
    policy: Annotated[bool, typer.Option(help="Apply the automatic exclusion policy (labelling.qc)")] = True,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the ranking intervals")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap")] = 0,
) -> None:
    """QC the pulled annotations, exclude bad annotators, label every pair and rank the models per criterion.

    Writes tables/preferences/part-all.parquet (replacing it) and labelling/ranking.json. Exclusion policy: gold
    accuracy < 0.6, left share outside [0.2, 0.8], or > 50 % of answers under 3 s (each after enough evidence);
    --exclude adds annotators by hand, --no-policy keeps everyone not named.

    Example: sr4k aggregate -w ./sr4k-data --bootstrap 200
    """
    from flows.release import aggregate_flow

    try:
        out = aggregate_flow(
            workspace=str(workspace), exclude=exclude or [], policy=policy, bootstrap=bootstrap, seed=seed
        )
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    print_aggregate(out)


def print_aggregate(out: dict[str, Any]) -> None:
    """QC, rankings and the aggregation counts of ``aggregate_flow``'s result (also shown by ``sr4k demo``)."""
    print_qc(out["qc"])
    for criterion, rows in out["rankings"].items():
        print_ranking(criterion, rows)
    r = out["report"]
    t = Table("what", "count", title="aggregation")
    keys = (
        "annotation_rows",
        "superseded_versions",
        "duplicate_annotations",
        "invalid",
        "excluded_annotator_votes",
        "unknown_pair",
        "used",
        "pairs",
        "preferences",
        "pairs_unannotated",
    )
    for k in keys:
        t.add_row(k, str(r[k]))
    for reason, n in r["invalid_by_reason"].items():
        t.add_row(f"  invalid: {reason}", str(n))
    for crit, n in r["pairs_without_vote_on"].items():
        t.add_row(f"  no vote on {crit}", str(n))
    for crit, labels in r["labels"].items():
        t.add_row(f"labels {crit}", ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    console.print(t)
    if r["lr_unresolved"]:
        warn(
            f"{r['lr_unresolved']} preference(s) have no LR image (their LR set is not in "
            "the workspace); `sr4k release preferences` will refuse them until it is rebuilt"
        )
    console.print(f"preferences: {out['paths']['preferences']}\nranking: {out['paths']['ranking']}")


def print_qc(qc: dict[str, Any]) -> None:
    """The per-annotator QC table and the agreement figures (also used by `sr4k label status`)."""
    t = Table(title="annotators")
    t.add_column("annotator", no_wrap=True)
    for head in ("n", "invalid", "gold", "gold acc", "left", "fast", "peer", "excluded"):
        t.add_column(head, justify="right")
    for who, s in qc["annotators"].items():
        t.add_row(
            who,
            str(s["n"]),
            str(s.get("n_invalid", 0)),
            str(s["gold_n"]),
            _num(s["gold_accuracy"]),
            _num(s["left_share"]),
            _num(s["fast_share"]),
            _num(s.get("peer_agreement")),
            "[red]yes[/]" if s["excluded"] else "[green]no[/]",
        )
    console.print(t)
    console.print(
        "left = share of decisive answers on the left side; fast = share under the time limit; peer = "
        "agreement with the other annotators' plurality",
        style="dim",
    )
    for who, s in qc["annotators"].items():
        if s["excluded"]:
            console.print(f"[red]excluded[/] {who}: {s['reason']}")
    a = Table("criterion", "Krippendorff α (all)", "α (kept)", "Cohen κ min", "κ max", title="agreement")
    for c, alpha in qc["alpha"].items():
        ks = [v[c] for v in qc["kappa"].values() if v.get(c) is not None]
        a.add_row(
            c,
            _num(alpha),
            _num(qc.get("alpha_kept", {}).get(c)),
            _num(min(ks) if ks else None),
            _num(max(ks) if ks else None),
        )
    console.print(a)


def print_ranking(criterion: str, rows: list[dict[str, Any]]) -> None:
    t = Table("rank", "model", "θ", "95 % CI", "wins", "losses", "ties", title=f"Bradley–Terry ranking: {criterion}")
    for r in rows:
        ci = "–" if r["ci_low"] is None else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        t.add_row(
            str(r["rank"]), r["model"], f"{r['theta']:.3f}", ci, str(r["wins"]), str(r["losses"]), str(r["ties"])
        )
    console.print(t)


def _release(workspace: Path, kind: str, name: str, version: str, **kw: Any) -> None:
    from flows.release import release_flow

    try:
        s = release_flow(workspace=str(workspace), kind=kind, name=name, version=version, **kw)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        fail(str(e))
    print_release(s, name, version, kind)


def print_release(s: dict[str, Any], name: str, version: str, kind: str) -> None:
    t = Table("what", "value", title=f"release {name}-{version} ({kind})")
    for k in ("source", "split", "samples", "shards"):
        t.add_row(k, str(s[k]))
    t.add_row("bytes", f"{s['bytes']:,}")
    console.print(t)
    console.print(f"release: {s['path']}\ncard: {Path(s['path']) / 'README.md'}")


release_app = typer.Typer(
    help="Release a dataset: sharded webdataset + manifest (sha256) + index + dataset card.", no_args_is_help=True
)


@release_app.command("preferences")
def release_preferences(
    name: NameOpt,
    version: VersionOpt,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    max_count: MaxCountOpt = 1000,
    max_bytes: MaxBytesOpt = 2 << 30,
) -> None:
    """Release the aggregated preferences (run `sr4k aggregate` first): LR, A, B and the labels per pair.

    Example: sr4k release preferences --name refsr --version 0.2.0
    """
    _release(workspace, "preferences", name, version, max_count=max_count, max_bytes=max_bytes)


@release_app.command("trainset")
def release_trainset(
    name: NameOpt,
    version: VersionOpt,
    dataset: Annotated[str | None, typer.Option(help="Curated shard dataset", show_default="the only one")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    max_count: MaxCountOpt = 1000,
    max_bytes: MaxBytesOpt = 2 << 30,
) -> None:
    """Release the curated training set (`sr4k curate`): HR/LR pairs with their provenance.

    Example: sr4k release trainset --name train4k --version 1.0.0 --dataset train4k
    """
    _release(workspace, "trainset", name, version, source=dataset, max_count=max_count, max_bytes=max_bytes)


@release_app.command("benchmark")
def release_benchmark(
    name: NameOpt,
    version: VersionOpt,
    bench: Annotated[str | None, typer.Option(help="Benchmark name", show_default="the only one")] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    max_count: MaxCountOpt = 1000,
    max_bytes: MaxBytesOpt = 2 << 30,
) -> None:
    """Release a benchmark (`sr4k bench build|import`): LR (and HR) per item.

    Example: sr4k release benchmark --name syn4k --version 1.0.0 --bench syn4k
    """
    _release(workspace, "benchmark", name, version, source=bench, max_count=max_count, max_bytes=max_bytes)


def register(app: typer.Typer) -> None:
    """Add ``aggregate`` and the ``release`` sub-app to ``app``."""
    app.command("aggregate")(aggregate)
    app.add_typer(release_app, name="release")
