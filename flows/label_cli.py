"""`sr4k label ...`: the Label Studio server and the push / pull of pairwise rankings; `register(app)` adds them.

sr4k label serve [--port 8080] [--foreground]     a real Label Studio on 127.0.0.1 (SQLite in the workspace) and the
                                                  annotators' gate in front of it (port+1; see labelling.gate)
sr4k label stop
sr4k label add-annotator alice@lab.org [--show-password]   a login: prints "url: <login URL>" (the gate's) and,
                                                  with --show-password, "password: <password>" to hand over
sr4k label push --pairs all [--overlap 3] [--gold-rate 0.05]
sr4k label status                                 progress, per-annotator counts, gold accuracy, agreement
sr4k label pull                                   incremental; safe to run any time
sr4k label deploy                                 Prefect deployments of push / pull-aggregate-release (flow.serve)

Settings come from the environment (``SR4K_LABEL_PORT``, ``SR4K_LABEL_DB=postgresql`` + ``SR4K_LABEL_PG_*``; see
``labelling.server``); ``--port`` overrides the port. The admin password, API token, Django secret and annotator
passwords are in ``<workspace>/labelstudio/credentials.json`` (0600, directory 0700, outside the served ``images/``)
and are never printed, except an annotator's with ``--show-password``.
"""

from __future__ import annotations

import signal
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.console import DEFAULT_WORKSPACE, WorkspaceOpt, console, fail

PortOpt = Annotated[int | None, typer.Option(help="Label Studio port", show_default="$SR4K_LABEL_PORT or 8080")]
ProjectOpt = Annotated[str, typer.Option(help="Label Studio project (one per labelling campaign)")]

label_app = typer.Typer(
    help="Label Studio: serve it, add annotators, push pairs, pull rankings.", no_args_is_help=True
)


def _settings(port: int | None):
    from labelling.server import LabelSettings

    s = LabelSettings()
    return s.model_copy(update={"port": port}) if port else s


def _table(title: str, rows: dict[str, Any]) -> None:
    t = Table("what", "value", title=title)
    for k, v in rows.items():
        if isinstance(v, dict):
            t.add_row(k, ", ".join(f"{kk} {vv}" for kk, vv in v.items()) or "–")
        else:
            t.add_row(k, str(v))
    console.print(t)


@label_app.command("serve")
def serve(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    port: PortOpt = None,
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl+C stops the server")] = False,
) -> None:
    """Start Label Studio for this workspace (background by default; reuses a running one); health-checked.

    Example: sr4k label serve -w ./sr4k-data
    """
    from labelling import server

    s = _settings(port)
    try:
        with console.status("starting Label Studio (first start runs migrations, ~35-60 s)"):
            info = server.start(workspace, s)
    except server.LabelStudioError as e:
        fail(str(e))
    creds = server.credentials(server.Workspace(workspace))
    _table(
        "Label Studio",
        {
            "annotators' gate": info.gate or server.gate_url(s),
            "admin URL (this machine only)": info.url,
            "state": "started" if info.started else "already running",
            "seconds": f"{info.seconds:.1f}",
            "admin": creds["admin_email"],
            "admin password / token": f"in {server.data_dir(server.Workspace(workspace))}/credentials.json (0600)",
            "database": s.db,
            "pid": info.pid,
        },
    )
    console.print(f"annotators log in at: {server.login_url(s)}", soft_wrap=True, highlight=False)
    console.print(
        f"give annotators only the gate's port {server.gate_url(s).rsplit(':', 1)[1]} "
        f"(add them with: sr4k label add-annotator <e-mail> -w {workspace})",
        soft_wrap=True,
    )
    if not foreground:
        console.print(f"stop it with: sr4k label stop -w {workspace}")
        return
    stop_now = False

    def _stop(*_: Any) -> None:
        nonlocal stop_now
        stop_now = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop_now:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    server.stop(workspace)
    console.print("Label Studio stopped")


@label_app.command("stop")
def stop(workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Stop the Label Studio started by `sr4k label serve` for this workspace (its data stays).

    Example: sr4k label stop -w ./sr4k-data
    """
    from labelling import server

    console.print("stopped" if server.stop(workspace) else "no Label Studio recorded as running for this workspace")


@label_app.command("add-annotator")
def add_annotator(
    email: Annotated[str, typer.Argument(help="The annotator's e-mail (their login)")],
    password: Annotated[str | None, typer.Option(help="Password", show_default="generated")] = None,
    show_password: Annotated[
        bool, typer.Option(help="Print the password (for handing over; it is otherwise only in the 0600 file)")
    ] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    port: PortOpt = None,
) -> None:
    """Create a Label Studio login for an annotator. The password (generated unless given) is kept in the
    workspace's 0600 credentials file, not printed — unless --show-password, to hand it over.

    Example: sr4k label add-annotator alice@lab.org --show-password
    """
    from labelling import server
    from pipelines.store.workspace import Workspace

    try:
        u = server.add_annotator(workspace, email, password, _settings(port))
    except server.LabelStudioError as e:
        fail(str(e))
    creds = server.data_dir(Workspace(workspace)) / "credentials.json"
    _table(
        f"annotator {email}", {"state": "created" if u["created"] else "existed (password reset)", "user id": u["id"]}
    )
    # plain lines, to copy or to parse: the login page of the gate lands on the labelling stream
    console.print(f"url: {u['url']}", soft_wrap=True, highlight=False)
    if show_password:
        console.print(f"password: {u['password']}", soft_wrap=True, highlight=False, markup=False)
    else:
        console.print(f'password kept in {creds} under "annotators" (or rerun with --show-password)', soft_wrap=True)


@label_app.command("push")
def push(
    pairs: Annotated[str, typer.Option(help="'all', a pairs part name, or a SQL condition over the pairs table")],
    overlap: Annotated[int, typer.Option(help="Annotations per pair (Label Studio's maximum annotations)")] = 3,
    gold_rate: Annotated[float, typer.Option(help="Share of gold tasks (known answer) among the project's")] = 0.05,
    crop: Annotated[int, typer.Option(help="Side of the compared regions in HR pixels (0: whole images)")] = 224,
    seed: Annotated[int, typer.Option(help="Seed: gold choice, task order")] = 0,
    project: ProjectOpt = "pairs",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    port: PortOpt = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
) -> None:
    """Push pairs as Label Studio tasks: each pair once (rerun-safe, reconciled with the server), gold mixed in.

    Example: sr4k label push --pairs all --overlap 3 --gold-rate 0.05
    """
    from labelling import push as pushmod
    from labelling.server import LabelStudioError

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
        console=console,
    ) as bar:
        job = bar.add_task("import tasks", total=None)
        try:
            r = pushmod.push_pairs(
                workspace,
                pairs,
                overlap=overlap,
                gold_rate=gold_rate,
                project=project,
                crop=crop,
                seed=seed,
                settings=_settings(port),
                on_batch=lambda n, total: bar.update(job, completed=n, total=total),
            )
        except (LabelStudioError, ValueError, FileNotFoundError) as e:
            fail(str(e))
    _table(f"push → project {r['project']} (id {r['project_id']})", r)
    console.print(f"annotators: open {r['url']}/projects/{r['project_id']}/ and press Label All Tasks")


@label_app.command("pull")
def pull(
    project: ProjectOpt = "pairs",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    port: PortOpt = None,
    full: Annotated[bool, typer.Option(help="Export all annotated tasks, not only those changed since")] = False,
) -> None:
    """Pull new and edited annotations into tables/annotations (validated, mapped to candidates). Safe any time.

    Example: sr4k label pull -w ./sr4k-data
    """
    from labelling.pull import pull_annotations
    from labelling.server import LabelStudioError

    try:
        with console.status("exporting annotations"):
            r = pull_annotations(workspace, project, _settings(port), full=full)
    except LabelStudioError as e:
        fail(str(e))
    _table(f"pull ← project {r['project']} (id {r['project_id']})", r)
    console.print(
        f'next: sr4k sql -w {workspace} "select annotator, pair_id, consistency, naturalness, valid '
        'from annotations order by updated_at desc limit 10"'
    )


@label_app.command("status")
def status(
    project: ProjectOpt = "pairs",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    port: PortOpt = None,
    refresh: Annotated[bool, typer.Option(help="Pull first (incremental, safe)")] = True,
) -> None:
    """Progress on the server, per-annotator counts, gold accuracy and agreement so far.

    Example: sr4k label status -w ./sr4k-data
    """
    from labelling.pull import project_status
    from labelling.server import LabelStudioError

    try:
        s = project_status(workspace, project, _settings(port), refresh=refresh)
    except LabelStudioError as e:
        fail(str(e))
    _table(f"progress — project {project} (id {s['project_id']})", s["progress"])
    t = Table("annotator", "annotations", "valid", "gold", "gold correct", "median lead time (s)", title="annotators")
    for who, a in sorted(s["annotators"].items()):
        t.add_row(
            who,
            str(a["n"]),
            str(a["valid"]),
            str(a["gold_n"]),
            str(a["gold_correct"]),
            "–" if a["median_lead_time"] is None else f"{a['median_lead_time']:.1f}",
        )
    console.print(t)
    try:
        from flows.release_cli import print_qc
        from labelling.qc import qc_summary
    except ImportError:
        console.print("agreement: labelling.qc is not installed here", style="dim")
        return
    if s["progress"]["annotation_rows"]:
        print_qc(qc_summary(workspace))


@label_app.command("deploy")
def deploy(workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Serve Prefect deployments (push, pull, pull→aggregate→release) so the team launches them from the Prefect UI.

    Needs a Prefect API: `sr4k server` in another shell (or PREFECT_API_URL set). Runs until Ctrl+C.

    Example: sr4k label deploy -w ./sr4k-data
    """
    from flows.label import serve_deployments

    serve_deployments(str(workspace))


def register(app: typer.Typer) -> None:
    """Add the ``label`` sub-app to ``app``."""
    app.add_typer(label_app, name="label")
