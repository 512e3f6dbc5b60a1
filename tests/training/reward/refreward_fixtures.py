"""Tiny preference pairs for the RefReward tests: a 14x14 LR, candidate a = its x4 nearest upscale (faithful),
candidate b = a plus strong noise (unfaithful, "sharper"). Written as a workspace table or a release tar."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from schemas.labels import PREFERENCES, PreferenceRec

TEST_BUDGET = {"global_max_pixels": 28 * 28, "crop_size": 28, "n_crops": 1}  # 6 images of one token each


def pair_images(i: int, lr_side: int = 14, scale: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    lr = rng.integers(0, 256, (lr_side, lr_side, 3), dtype=np.uint8)
    a = np.kron(lr, np.ones((scale, scale, 1), np.uint8))
    b = np.clip(a.astype(int) + rng.integers(-80, 81, a.shape), 0, 255).astype(np.uint8)
    return lr, a, b


def pair_rec(i: int, lr_path: str, path_a: str, path_b: str) -> PreferenceRec:
    """Labels: consistency "a" (2 of 3 votes), naturalness "b" for even i, "tie" for odd i (unanimous)."""
    nat = "tie" if i % 2 else "b"
    return PreferenceRec(
        pair_id=f"pair{i:03d}",
        lr_key=f"lr{i:03d}",
        lr_path=lr_path,
        model_a="nearest",
        model_b="noisy",
        version_a="v1",
        version_b="v1",
        path_a=path_a,
        path_b=path_b,
        consistency="a",
        consistency_votes_a=2,
        consistency_votes_b=1,
        consistency_votes_tie=0,
        consistency_agreement=2 / 3,
        consistency_ds=0.8,
        naturalness=nat,
        naturalness_votes_a=0,
        naturalness_votes_b=0 if i % 2 else 3,
        naturalness_votes_tie=3 if i % 2 else 0,
        naturalness_agreement=1.0,
        naturalness_ds=None,
        n_annotators=3,
        both_unusable_votes=0,
    )


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_workspace(root: Path, n: int = 4) -> Path:
    from pipelines.store.workspace import write_table

    recs = []
    for i in range(n):
        paths = {}
        for name, arr in zip(("lr", "a", "b"), pair_images(i), strict=True):
            rel = f"images/pair{i:03d}_{name}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(_png(arr))
            paths[name] = rel
        recs.append(pair_rec(i, paths["lr"], paths["a"], paths["b"]))
    write_table(root / "tables" / "preferences" / "part-000.parquet", recs, PREFERENCES)
    return root


def write_release(folder: Path, n: int = 4, per_shard: int = 3) -> Path:
    """The preferences release layout of schemas/labels.py, written with webdataset.TarWriter."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    for shard in range((n + per_shard - 1) // per_shard):
        with wds.TarWriter(str(folder / f"train-{shard:06d}.tar")) as w:
            for i in range(shard * per_shard, min(n, (shard + 1) * per_shard)):
                lr, a, b = pair_images(i)
                rec = pair_rec(i, "lr.png", "a.png", "b.png")
                w.write(
                    {
                        "__key__": rec.pair_id,
                        "lr.png": _png(lr),
                        "a.png": _png(a),
                        "b.png": _png(b),
                        "json": json.dumps(asdict(rec)).encode(),
                    }
                )
    (folder / "manifest.json").write_text(json.dumps({"kind": "preferences"}))
    return folder
