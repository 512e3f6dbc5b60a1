"""Demo inputs: real photographs from the machine, plus a few broken files so every reject path shows up."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

MATE = Path("/usr/share/backgrounds/mate")


def prepare_demo_input(dest: Path) -> tuple[str, dict]:
    """Fill ``dest`` with demo sources; return (description, curate config overrides)."""
    dest.mkdir(parents=True, exist_ok=True)
    if MATE.is_dir():
        for f in sorted(MATE.rglob("*")):
            if f.is_file():
                target = dest / f.relative_to(MATE)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    shutil.copy2(f, target)
        first_photo = sorted((dest / "nature").glob("*.jpg"))[0]
        desc, overrides = "Debian mate-backgrounds wallpapers", {"hr_size": "1024", "filters.min_short_side": 1024}
    else:
        from skimage import data

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
            path = dest / "photos" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img = getattr(data, name)()
            Image.fromarray(img if img.ndim == 3 else np.stack([img] * 3, -1)).save(path)
        first_photo = dest / "photos" / "astronaut.png"
        desc = "scikit-image's bundled photos"
        overrides = {"hr_size": "256", "filters.min_short_side": 256, "_photos": "photos"}
    broken = dest / "broken"
    broken.mkdir(exist_ok=True)
    data_bytes = first_photo.read_bytes()
    (broken / "truncated.jpg").write_bytes(data_bytes[: len(data_bytes) // 3])
    (broken / "notes.jpg").write_text("this is a text file with an image extension\n")
    (broken / "empty.png").write_bytes(b"")
    (first_photo.parent / f"copy-of-{first_photo.name}").write_bytes(data_bytes)  # an exact duplicate
    return desc, overrides


# ---------------------------------------------------------------------------------------------------- labelling

SIM_ANNOTATORS = {
    "sim-careful@sim.example.org": 0.5,
    "sim-average@sim.example.org": 1.0,
    "sim-noisy@sim.example.org": 2.0,
}
"""Simulated annotators of the demo: e-mail -> noise temperature T (P(a preferred) = sigmoid((s_a - s_b) / T))."""


def proxy_scores(lr: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """What the demo's simulated annotators "see" in a candidate (z-scored over a pair before use):

    - consistency: ``lr_consistency_psnr`` (PSNR-Y of the candidate area-downscaled to the LR's size vs the LR) — the
      classic re-degradation fidelity check (an output that invents or loses content drifts away from its input);
    - naturalness: log of the Laplacian energy (sharpness) of the candidate's luma — crisp detail reads as natural
      at this scale, blur does not.

    A stated, checkable rule (not a model of human taste): it lets the demo run the whole chain — push, answers,
    pull, QC, aggregation, release, reward training — with answers that depend on the pictures."""
    import cv2

    from pipelines.bench.metrics import lr_consistency_psnr

    psnr = lr_consistency_psnr(lr, out)
    luma = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float64)
    sharp = float(np.log(np.mean(cv2.Laplacian(luma, cv2.CV_64F) ** 2) + 1e-6))
    return psnr, sharp


def simulate_labelling(workspace: Path, lr_set: str, pairs: str = "demo", project: str = "demo-sim",
                       seed: int = 0) -> dict:  # fmt: skip
    """Start the workspace's real Label Studio, make the simulated annotators Label Studio users, push the pairs
    part ``pairs`` with their answers embedded (overlap 3, 10 % gold, answered in *screen* terms, so the pull must
    map left/right back to the candidates), pull, and stop the server. Returns the push and pull reports.

    Each annotator answers per criterion with P(a) = sigmoid((z_a - z_b) / T) on ``proxy_scores`` (z-scored within
    the pair's two candidates: z = +-1), a tie when both scores are within 1 %; lead times 4-20 s. Gold tasks are
    left for people (push embeds answers only in real pairs)."""
    from scipy.special import expit

    from labelling import push, server
    from labelling.aggregate import lr_locations
    from labelling.interface import TO_NAME
    from labelling.pull import pull_annotations

    ws_root = Path(workspace).resolve()
    rng = np.random.default_rng(seed)
    lrs = {k: ws_root / v for k, v in lr_locations(_ws(ws_root), lr_set).items()}
    cache: dict[str, np.ndarray] = {}

    def load(path: Path) -> np.ndarray:
        key = str(path)
        if key not in cache:
            cache[key] = np.asarray(Image.open(path).convert("RGB"))
        return cache[key]

    info = server.start(_ws(ws_root))
    try:
        api = server.Api.for_workspace(_ws(ws_root))
        users = {u["email"]: u["id"] for u in server.list_users(api)}
        for email in SIM_ANNOTATORS:
            if email not in users:
                users[email] = api.post("/api/users/", {"email": email, "username": email})["id"]

        def prelabelled(pair: dict, data: dict) -> list[dict]:
            lr = load(lrs[pair["lr_key"]])
            sa = proxy_scores(lr, load(ws_root / pair["path_a"]))
            sb = proxy_scores(lr, load(ws_root / pair["path_b"]))
            left = data["sr4k_left"]
            anns = []
            for email, temp in SIM_ANNOTATORS.items():
                result = []
                for k, name in enumerate(("consistency", "naturalness")):
                    a, b = sa[k], sb[k]
                    if abs(a - b) <= 0.01 * max(abs(a), abs(b), 1e-9):
                        choice = "tie"
                    else:
                        winner = "a" if rng.random() < expit(np.sign(a - b) * 2 / temp) else "b"
                        choice = "left" if winner == left else "right"
                    result.append({"from_name": name, "to_name": TO_NAME, "type": "choices",
                                   "value": {"choices": [choice]}})  # fmt: skip
                anns.append({"completed_by": users[email], "lead_time": float(rng.uniform(4, 20)), "result": result})
            return anns

        pushed = push.push_pairs(_ws(ws_root), pairs, overlap=3, gold_rate=0.1, project=project, seed=seed,
                                 prelabelled=prelabelled)  # fmt: skip
        pulled = pull_annotations(_ws(ws_root), project=project)
    finally:
        server.stop(_ws(ws_root))
    return {"url": info.url, "push": pushed, "pull": pulled}


def how_to_label(out: Path) -> str:
    """What a person runs to label the demo's pairs in a browser (the simulated answers are in project
    ``demo-sim``; this pushes the same pairs into the default project ``pairs``, which the annotator lands on)."""
    import shlex

    w = shlex.quote(str(out))
    return "\n".join([
        "label the demo pairs yourself (Label Studio on 127.0.0.1, your browser):",
        f"  sr4k label serve -w {w}",
        f"  sr4k label add-annotator you@lab.org --show-password -w {w}    # prints url: and password:",
        f"  sr4k label push --pairs demo --overlap 1 -w {w}",
        "  open the url and log in; keys 1/2/3 and 4/5/6 answer (Left/Right/Tie), F swaps Left and Right in place,",
        "  Ctrl+Enter submits the pair",
        f"  sr4k label pull -w {w}; sr4k label stop -w {w}",
    ])  # fmt: skip


def _ws(root: Path):
    from pipelines.store.workspace import Workspace

    return Workspace(root)
