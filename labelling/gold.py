"""Gold pairs: a clean candidate against an obviously degraded copy of itself, with a known answer.

A gold pair is built from a real candidate output C of a selected pair (the model_a side): candidate "a" is C as is,
candidate "b" is C blurred (Gaussian, sigma = 1.5 % of the short side, at least 2 px), given a strong colour cast
(red x1.25, blue x0.7) and re-encoded as JPEG at quality 8 (blocking). The known answer is "a" on both criteria:
the cast and the lost structure break consistency with the LR input, and blur plus blocking break naturalness. Gold
pairs measure annotator attention (``qc``: gold accuracy); they never enter the preferences.

To the annotator a gold task looks like any other: its ``pair_id`` is ``pr-`` + 20 hex digits like a real pair's
(BLAKE2b over "gold", the LR key, the clean candidate and the seed), the degraded image is stored content-addressed
under ``images/`` like every candidate, and gold tasks are shuffled among the real ones. The known answers stay in the
workspace (``labelstudio/projects/<project>-gold.json`` and ``label_tasks.gold_*``), never in the task data that the
annotator's browser receives. The definitions file is written before the tasks are imported, so a push that crashes
after the import still finds the answers when it adopts the tasks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from pipelines.store.workspace import Workspace, write_bytes_atomic, write_json_atomic

GOLD_MODEL = "gold-degraded"
JPEG_QUALITY = 8


def degrade(rgb: np.ndarray) -> np.ndarray:
    """The gold degradation of an RGB uint8 image (module doc). Deterministic."""
    sigma = max(2.0, 0.015 * min(rgb.shape[:2]))
    out = cv2.GaussianBlur(rgb, (0, 0), sigma).astype(np.float32)
    out[..., 0] *= 1.25
    out[..., 2] *= 0.7
    out = np.clip(out, 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def gold_pair_id(lr_key: str, model: str, version: str, seed: int) -> str:
    h = hashlib.blake2b("\x1f".join(("gold", lr_key, model, version, str(seed))).encode(), digest_size=10)
    return f"pr-{h.hexdigest()}"


def make_gold(ws: Workspace, bases: list[dict], seed: int) -> list[dict]:
    """One gold pair per base pair (a pairs-table row): writes the degraded image, returns the gold definitions
    (pair-like dicts with ``left`` and the known answers ``gold_consistency`` / ``gold_naturalness``)."""
    rng = np.random.default_rng(seed)
    out = []
    for base in bases:
        src = ws.root / base["path_a"]
        bgr = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"candidate image {src} (pair {base['pair_id']}) is missing or unreadable")
        bad = degrade(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        _ok, png = cv2.imencode(".png", cv2.cvtColor(bad, cv2.COLOR_RGB2BGR))
        sha = hashlib.sha256(png.tobytes()).hexdigest()
        rel = f"images/{sha[:2]}/{sha}.png"
        if not (ws.root / rel).exists():
            write_bytes_atomic(ws.root / rel, png.tobytes())
        out.append(
            {
                "pair_id": gold_pair_id(base["lr_key"], base["model_a"], base["version_a"], seed),
                "lr_key": base["lr_key"],
                "model_a": base["model_a"],
                "model_b": GOLD_MODEL,
                "version_a": base["version_a"],
                "version_b": "gold/1",
                "path_a": base["path_a"],
                "path_b": rel,
                "width_b": int(bad.shape[1]),
                "height_b": int(bad.shape[0]),
                "left": "a" if rng.random() < 0.5 else "b",
                "gold_consistency": "a",
                "gold_naturalness": "a",
            }
        )
    return out


def gold_file(ws: Workspace, project: str) -> Path:
    return ws.ls_project(f"{project}-gold")


def load_gold(ws: Workspace, project: str) -> dict[str, dict]:
    path = gold_file(ws, project)
    return json.loads(path.read_text()) if path.exists() else {}


def save_gold(ws: Workspace, project: str, gold: dict[str, dict]) -> None:
    write_json_atomic(gold_file(ws, project), gold)
