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
