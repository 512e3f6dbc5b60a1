"""The workspace's private Label Studio files and logins: the data directory, the credentials, the served folder,
the environment that hands the secrets to Label Studio, and annotator passwords set without a command line.

Layout under the workspace::

    labelstudio/                   mode 0700, every file in it 0600 (``secure_permissions``; Label Studio runs with
                                   umask 077)
    labelstudio/credentials.json   admin e-mail, password, API token, Django SECRET_KEY, annotator passwords, the
                                   gate's secret (generated once, never printed or logged: the CLI shows only the
                                   e-mail, and an annotator's password with --show-password)
    labelstudio/server.json        pids / process groups / ports of the running server and gate (``labelling.server``)
    labelstudio/server.log, gate.log   their stdout and stderr
    labelstudio/label_studio.sqlite3, media/ ...   Label Studio's own data (its BASE_DATA_DIR)
    served/images -> ../images     Label Studio's local-files document root holds only this link (``served_root``)

The admin user and its token are preset through Label Studio's environment (``LABEL_STUDIO_USERNAME/PASSWORD/
USER_TOKEN``, ``server_env``); ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` is required or the preset token gets
401. Secrets reach Label Studio only through its environment (``/proc/<pid>/environ`` is readable by the same user
only), never its command line. Images are served by Label Studio's local-files storage
(``/data/local-files/?d=images/<...>``), so the browser needs no second server and no CORS.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from labelling.settings import (
    LS_ENV_PREFIXES,
    NO_OUTBOUND,
    LabelSettings,
    LabelStudioError,
    label_studio_bin,
    proxy_env,
    site_packages,
)
from pipelines.store.workspace import Workspace, write_bytes_atomic


def data_dir(ws: Workspace) -> Path:
    """Label Studio's data directory (its SQLite, media, our credentials): mode 0700, never served."""
    return ws.labelstudio


def served_root(ws: Workspace) -> Path:
    """Label Studio's local-files document root: ``<workspace>/served``, whose only entry is the link
    ``images -> ../images`` (made by ``ensure_served``).

    Why a folder of its own: everything under the document root can be reached by a local-files storage, and in the
    community edition any user can create one; the workspace itself holds ``labelstudio/`` (credentials, the SQLite
    with the API token). ``images/`` cannot be the document root either: Label Studio refuses a storage *on* the
    document root ("cannot be the same as LOCAL_FILES_DOCUMENT_ROOT"), and all images sit directly in
    ``images/<sha[:2]>/``. A link keeps task URLs as the workspace-relative paths the tables record
    (``/data/local-files/?d=images/ab/<sha>.png``) and a moved workspace still works (the link is relative)."""
    return ws.served


def served_images(ws: Workspace) -> Path:
    """The path of the images' local-files storage: ``<workspace>/served/images`` (a link to ``../images``)."""
    return served_root(ws) / "images"


def ensure_served(ws: Workspace) -> None:
    """Make ``served/images -> ../images`` (``served_root``); an error naming the fix if ``served/`` holds anything
    else (e.g. a copy made by a tool that follows links), because everything there is readable by any user."""
    root, link = served_root(ws), served_images(ws)
    ws.images.mkdir(parents=True, exist_ok=True)
    root.mkdir(exist_ok=True)
    if link.is_symlink() and os.readlink(link) == "../images":
        pass
    elif not link.exists() and not link.is_symlink():
        link.symlink_to("../images", target_is_directory=True)
    else:
        raise LabelStudioError(
            f"{link} should be a link to ../images (Label Studio serves that folder): remove it "
            f"and rerun `sr4k label serve`"
        )
    extra = sorted(p.name for p in root.iterdir() if p.name != "images")
    if extra:
        raise LabelStudioError(
            f"{root} is Label Studio's served folder and must hold only the link 'images': move "
            f"{', '.join(extra[:5])} out of it"
        )


def secure_permissions(ws: Workspace) -> None:
    """Make the Label Studio data directory 0700 and every file directly in it (SQLite and its journals, logs,
    credentials) 0600 — also for a workspace made before this rule (umask 022 left them world-readable)."""
    d = data_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for p in d.iterdir():
        if p.is_file() and not p.is_symlink():
            p.chmod(0o600)
        elif p.is_dir() and not p.is_symlink():
            p.chmod(0o700)


def credentials(ws: Workspace, settings: LabelSettings | None = None) -> dict[str, Any]:
    """The workspace's admin credentials, made once and kept in a 0600 file.

    Made from the settings ``SR4K_LABEL_ADMIN_EMAIL`` / ``SR4K_LABEL_ADMIN_PASSWORD`` / ``SR4K_LABEL_TOKEN`` when they
    are set (a team that wants to know its admin login), else generated with ``secrets``. They take effect when the
    workspace's Label Studio is first created (Label Studio creates its admin once); afterwards the file is the
    truth. Annotator logins are added under ``annotators`` by ``add_annotator``. Never print this dict."""
    path = data_dir(ws) / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    s = settings or LabelSettings()
    creds = {
        "admin_email": s.admin_email,
        "admin_password": s.admin_password.get_secret_value() if s.admin_password else secrets.token_urlsafe(18),
        # 40 hex digits: the shape of Label Studio's legacy tokens
        "token": s.token.get_secret_value() if s.token else secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(48),
        "annotators": {},
    }
    save_credentials(ws, creds)
    return creds


def gate_secret(ws: Workspace) -> str:
    """A random value the gate adds to every request it forwards (``labelling.gate.GATE_HEADER``), kept with the
    credentials; made on first use."""
    creds = credentials(ws)
    if not creds.get("gate_secret"):
        creds["gate_secret"] = secrets.token_urlsafe(32)
        save_credentials(ws, creds)
    return creds["gate_secret"]


def save_credentials(ws: Workspace, creds: dict[str, Any]) -> None:
    path = data_dir(ws) / "credentials.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = os.umask(0o077)  # the temp file is created 0600 too, so the secret is never world-readable
    try:
        write_bytes_atomic(path, (json.dumps(creds, indent=2, sort_keys=True) + "\n").encode())
    finally:
        os.umask(old)
    path.chmod(0o600)


def server_env(ws: Workspace, settings: LabelSettings) -> dict[str, str]:
    """The environment Label Studio is started with (also used by ``label-studio reset_password``)."""
    creds = credentials(ws, settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(LS_ENV_PREFIXES)}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir(ws)),
        LABEL_STUDIO_USERNAME=creds["admin_email"],
        LABEL_STUDIO_PASSWORD=creds["admin_password"],
        LABEL_STUDIO_USER_TOKEN=creds["token"],
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(served_root(ws)),
        SECRET_KEY=creds["secret_key"],
        DJANGO_DB=settings.db,
        **NO_OUTBOUND,
        **proxy_env(settings),
    )
    if settings.db == "postgresql":
        env.update(
            POSTGRE_HOST=settings.pg_host,
            POSTGRE_PORT=str(settings.pg_port),
            POSTGRE_NAME=settings.pg_name,
            POSTGRE_USER=settings.pg_user,
            POSTGRE_PASSWORD=settings.pg_password,
        )
    return env


_SET_PASSWORD = (
    "import os, sys\n"
    "from django.contrib.auth import get_user_model\n"
    "u = get_user_model().objects.filter(email=os.environ['SR4K_USER_EMAIL']).first()\n"
    "sys.exit('no such user') if u is None else None\n"
    "u.set_password(os.environ['SR4K_USER_PASSWORD'])\n"
    "u.save(update_fields=['password'])\n"
)


def set_password(ws: Workspace, email: str, password: str, settings: LabelSettings | None = None) -> None:
    """Set a Label Studio user's password through ``manage.py shell`` (see ``add_annotator``: never in argv)."""
    s = settings or LabelSettings()
    binary = label_studio_bin()
    site = site_packages(binary)
    if site is None:
        raise LabelStudioError(
            f"cannot find label_studio/manage.py beside {binary}: reinstall with `bash .ci/bootstrap`"
        )
    env = server_env(ws, s) | {"SR4K_USER_EMAIL": email, "SR4K_USER_PASSWORD": password}
    cmd = [
        str(binary.resolve().parent / "python"),
        str(site / "label_studio" / "manage.py"),
        "shell",
        "-c",
        _SET_PASSWORD,
    ]
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=data_dir(ws),
        umask=0o077,
        stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        tail = (out.stdout + out.stderr)[-800:].replace(password, "***")
        raise LabelStudioError(f"setting the password of {email} failed: {tail}")
