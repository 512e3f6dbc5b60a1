"""Label Studio settings of sr4k, its errors, its binary, its URLs and the outbound switches it always runs with.

Label Studio (1.23.2) lives in its own virtualenv (``.venv-ls``, made by ``bash .ci/bootstrap``) because its pins
(python-json-logger==2.0.4, ...) force an old Prefect beside the app; sr4k runs it as a subprocess
(``labelling.server``) and talks to it over HTTP only (``labelling.api``). The binary is ``$SR4K_LABEL_STUDIO_BIN``
or else ``<repo>/.venv-ls/bin/label-studio``.

Settings (environment, prefix ``SR4K_LABEL_``; see ``LabelSettings``): ``PORT`` (8080), ``GATE_PORT`` (port + 1),
``HOST`` (127.0.0.1), ``OUTBOUND_PROXY`` (a closed 127.0.0.1 port),
``ADMIN_EMAIL`` / ``ADMIN_PASSWORD`` / ``TOKEN`` (the preset admin; generated when unset, see
``labelling.accounts.credentials``), ``DB`` = ``sqlite`` (default; ``labelstudio/label_studio.sqlite3``) or
``postgresql`` with ``PG_HOST``, ``PG_PORT``, ``PG_NAME``, ``PG_USER``, ``PG_PASSWORD`` (passed to Label Studio as
``DJANGO_DB=postgresql`` and ``POSTGRE_*``), ``START_TIMEOUT`` (s, default 240: a first start runs the migrations,
~35 s here, unless seeded from the migrated template of ``labelling.server.sqlite_template``), ``RETRIES`` (API tries
before an "unreachable" error, default 4) and ``RETRY_WAIT`` (first back-off, doubling, default 0.5 s).

Nothing leaves 127.0.0.1: ``NO_OUTBOUND`` switches Label Studio's Sentry, version check, analytics and feature-flag
client off, and ``proxy_env`` (the ``outbound_proxy`` setting) catches what has no switch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[1]
ADMIN_EMAIL = "admin@sr4k.local"


# Label Studio reads each setting X from LABEL_STUDIO_X, then HEARTEX_X, then X (core.utils.params.get_env): none of
# the caller's may leak in, so all three prefixes are dropped from the inherited environment.
LS_ENV_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "POSTGRE_", "DJANGO_", "SENTRY_", "FRONTEND_SENTRY_")


# Nothing leaves 127.0.0.1. Label Studio 1.23.2 (core/settings/label_studio.py) defaults SENTRY_DSN and
# FRONTEND_SENTRY_DSN to its own ingest.sentry.io projects whatever COLLECT_ANALYTICS says; core/utils/sentry.py
# initialises sentry_sdk only when SENTRY_DSN is truthy and the page template starts the browser's Sentry only
# when FRONTEND_SENTRY_DSN is, so both are set empty (under the LABEL_STUDIO_ name, which get_env reads first).
# LATEST_VERSION_CHECK asks PyPI for a newer version, COLLECT_ANALYTICS posts usage events, FEATURE_FLAGS_OFFLINE
# keeps the LaunchDarkly client from calling home.
NO_OUTBOUND = {
    "LABEL_STUDIO_SENTRY_DSN": "",
    "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "FEATURE_FLAGS_OFFLINE": "true",
}


class LabelStudioError(RuntimeError):
    """A Label Studio problem the user can fix; the message names the fix."""


class LabelStudioUnavailable(LabelStudioError):
    """The server did not answer after the bounded retries."""


class LabelSettings(BaseSettings):
    """Label Studio settings from the environment (``SR4K_LABEL_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="SR4K_LABEL_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind; keep 127.0.0.1 unless behind a proxy")
    port: int = Field(8080, description="HTTP port of Label Studio (sr4k and the admin; never hand it out)")
    gate_port: int | None = Field(None, description="Port of the annotators' gate (labelling.gate) [default: port+1]")
    db: Literal["sqlite", "postgresql"] = Field("sqlite", description="sqlite (in the workspace) or postgresql")
    pg_host: str = Field("localhost", description="PostgreSQL host (db=postgresql)")
    pg_port: int = Field(5432, description="PostgreSQL port")
    pg_name: str = Field("labelstudio", description="PostgreSQL database")
    pg_user: str = Field("postgres", description="PostgreSQL user")
    pg_password: str = Field("", description="PostgreSQL password")
    start_timeout: float = Field(240.0, description="Seconds to wait for /health after start (migrations ~35 s)")
    retries: int = Field(4, ge=1, description="API tries before LabelStudioUnavailable")
    retry_wait: float = Field(0.5, gt=0, description="First retry back-off in seconds (doubles)")
    request_timeout: float = Field(120.0, description="Seconds per API request")
    lock: bool = Field(True, description="Label Studio refuses logged-in users (but the admin) who bypass the gate")
    outbound_proxy: str = Field(
        "http://127.0.0.1:9",
        description="Proxy of Label Studio's own outbound HTTP; the default, a closed 127.0.0.1 port, keeps it local",
    )
    admin_email: str = Field(ADMIN_EMAIL, description="Admin login, used when the workspace's server is created")
    admin_password: SecretStr | None = Field(None, description="Admin password [default: generated]")
    token: SecretStr | None = Field(None, description="Admin API token, > 5 characters [default: generated]")


def label_studio_bin() -> Path:
    """``$SR4K_LABEL_STUDIO_BIN`` or ``<repo>/.venv-ls/bin/label-studio``; a clear error naming the fix."""
    env = os.environ.get("SR4K_LABEL_STUDIO_BIN")
    path = Path(env) if env else REPO / ".venv-ls" / "bin" / "label-studio"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise LabelStudioError(
            f"Label Studio not found at {path}: run `bash .ci/bootstrap` (creates .venv-ls with label-studio==1.23.2) "
            "or set SR4K_LABEL_STUDIO_BIN to a label-studio executable"
        )
    return path


def site_packages(binary: Path) -> Path | None:
    found = sorted(binary.resolve().parent.parent.glob("lib/python3*/site-packages/label_studio/manage.py"))
    return found[0].parent.parent if found else None


def base_url(settings: LabelSettings | None = None) -> str:
    s = settings or LabelSettings()
    return f"http://{s.host}:{s.port}"


def gate_url(settings: LabelSettings | None = None) -> str:
    """The annotators' URL: the gate (``labelling.gate``) in front of Label Studio."""
    s = settings or LabelSettings()
    return f"http://{s.host}:{s.gate_port or s.port + 1}"


def login_url(settings: LabelSettings | None = None) -> str:
    """The URL to hand an annotator: the gate's login page, which lands on the labelling stream."""
    return f"{gate_url(settings)}/user/login/?next=/sr4k/stream"


def proxy_env(settings: LabelSettings) -> dict[str, str]:
    """Proxy variables for Label Studio (``outbound_proxy``): besides the settings in ``NO_OUTBOUND`` it fetches
    tips from raw.githubusercontent.com for its login page (``core/views.py`` ``heidi_tips``), with no switch; every
    proxy-aware client (requests, urllib3, sentry_sdk) then goes to the proxy, which by default is a closed port on
    127.0.0.1, so the attempt fails on this machine. 127.0.0.1, localhost and the PostgreSQL host are reached directly.
    """
    p = settings.outbound_proxy
    direct = ",".join(dict.fromkeys(["127.0.0.1", "localhost", settings.pg_host]))
    return {
        "HTTP_PROXY": p,
        "HTTPS_PROXY": p,
        "http_proxy": p,
        "https_proxy": p,
        "ALL_PROXY": p,
        "all_proxy": p,
        "NO_PROXY": direct,
        "no_proxy": direct,
    }
