"""Preference pairs for the judge, from a workspace or from a preferences release.

``load_preferences(source)`` accepts

- a **workspace** folder: ``tables/preferences/part-*.parquet`` (schema ``schemas.labels.PREFERENCES``), read with
  pyarrow; ``lr_path``/``path_a``/``path_b`` are relative to the workspace root (absolute paths are kept);
- a **release** folder (or one ``.tar``): webdataset shards as ``sr4k release preferences`` writes them
  (``schemas/labels.py``): per sample ``<key>.lr.png``, ``<key>.a.png``, ``<key>.b.png`` and ``<key>.json`` (a
  ``PreferenceRec`` as a dict, its three paths being the member names). Tars are found recursively under the folder
  and read in sorted order. Images are not loaded: each sample keeps the member's offset in its (uncompressed) tar
  and reads the bytes on demand, so a release of 18K 4K pairs costs a few MB of memory.

Labels stay in candidate terms (``"a"``/``"b"``/``"tie"``); ``examples`` maps them to screen terms per prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from schemas.labels import CRITERIA, LABEL_VALUES, PreferenceRec

_FIELDS = {f.name for f in dataclasses.fields(PreferenceRec)}
MEMBERS = ("lr.png", "a.png", "b.png", "json")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where one image's encoded bytes live: a file, or a byte range of an uncompressed tar."""

    path: str
    offset: int = -1  # >= 0: byte offset of the member's data inside the tar at ``path``
    size: int = -1

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)

    def open(self) -> Image.Image:
        with Image.open(io.BytesIO(self.read())) as im:
            return im.convert("RGB")


@dataclass(frozen=True, slots=True)
class PreferenceSample:
    rec: PreferenceRec
    lr: ImageRef
    a: ImageRef
    b: ImageRef

    def load(self) -> tuple[Image.Image, Image.Image, Image.Image]:
        """(LR, candidate a, candidate b) as RGB PIL images."""
        return self.lr.open(), self.a.open(), self.b.open()


def _rec(d: dict, where: str) -> PreferenceRec:
    missing = sorted(_FIELDS - set(d) - {"schema_version"})
    if missing:
        raise ValueError(f"{where}: preference record lacks {missing} (not a schemas.labels.PreferenceRec)")
    rec = PreferenceRec(**{k: v for k, v in d.items() if k in _FIELDS})
    for c in CRITERIA:
        if getattr(rec, c) not in LABEL_VALUES:
            raise ValueError(f"{where}: {c}={getattr(rec, c)!r}, expected one of {LABEL_VALUES}")
    return rec


def _from_workspace(root: Path) -> list[PreferenceSample]:
    import pyarrow.parquet as pq

    from pipelines.store.workspace import Workspace  # here: the GPU scripts import this module without pyarrow

    parts = sorted(Workspace(root).table_dir("preferences").glob("part-*.parquet"))
    out = []
    for part in parts:
        for row in pq.read_table(part).to_pylist():
            rec = _rec(row, str(part))

            def ref(p: str) -> ImageRef:
                return _workspace_ref(root, p)

            out.append(PreferenceSample(rec, ref(rec.lr_path), ref(rec.path_a), ref(rec.path_b)))
    return out


def _workspace_ref(root: Path, location: str) -> ImageRef:
    """A workspace image location: a path (relative to the workspace or absolute), or ``<shard>.tar#<member>`` — the
    form ``labelling.aggregate.lr_locations`` gives LR inputs that live in a curated shard dataset — read as a byte
    range of the uncompressed tar (no extraction)."""
    path, sep, member = location.partition("#")
    q = Path(path)
    q = q if q.is_absolute() else root / q
    if not sep:
        return ImageRef(str(q))
    with tarfile.open(q, "r:") as tf:
        try:
            info = tf.getmember(member)
        except KeyError:
            raise FileNotFoundError(f"{q} has no member {member!r} (from preference location {location!r})") from None
    return ImageRef(str(q), info.offset_data, info.size)


def _split_member(name: str) -> tuple[str, str]:
    """webdataset's key/extension split: the key is the path up to the first dot of the basename."""
    d, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{d}/{key}" if d else key), ext


def _from_tar(path: Path) -> list[PreferenceSample]:
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    order: list[str] = []
    with tarfile.open(path, "r:") as tf:  # "r:" = uncompressed only: offsets must be byte offsets of the file
        metas: dict[str, bytes] = {}
        for m in tf:
            if not m.isfile():
                continue
            key, ext = _split_member(m.name)
            if key not in groups:
                groups[key] = {}
                order.append(key)
            groups[key][ext] = m
            if ext == "json":
                metas[key] = tf.extractfile(m).read()
    out = []
    for key in order:
        g = groups[key]
        lacking = [e for e in MEMBERS if e not in g]
        if lacking:
            raise ValueError(f"{path}: sample {key!r} lacks members {lacking} (expected {', '.join(MEMBERS)})")
        rec = _rec(json.loads(metas[key]), f"{path}:{key}.json")
        refs = [ImageRef(str(path), g[e].offset_data, g[e].size) for e in MEMBERS[:3]]
        out.append(PreferenceSample(rec, *refs))
    return out


def load_preferences(source: str | Path) -> list[PreferenceSample]:
    """All preference pairs of a workspace or a release (see the module docstring), in a stable order."""
    src = Path(source).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"preferences source {src} does not exist: give a workspace or a release folder")
    if src.is_file():
        if src.suffix != ".tar":
            raise ValueError(f"{src}: a single file must be a webdataset .tar of preference pairs")
        return _from_tar(src)
    if (src / "tables" / "preferences").is_dir():
        samples = _from_workspace(src.resolve())
    else:
        tars = sorted(src.rglob("*.tar"))
        if not tars:
            raise FileNotFoundError(
                f"{src} holds neither tables/preferences/ (a workspace) nor .tar shards (a preferences release): "
                "run `sr4k aggregate` in the workspace or `sr4k release preferences` first"
            )
        samples = [s for t in tars for s in _from_tar(t)]
    if not samples:
        raise ValueError(f"{src}: no preference pairs found")
    return samples


def filter_samples(samples: Iterable[PreferenceSample], min_agreement: float = 0.0) -> list[PreferenceSample]:
    """Drop pairs whose label agreement is below ``min_agreement`` on every criterion (no usable signal)."""
    return [s for s in samples if max(getattr(s.rec, f"{c}_agreement") for c in CRITERIA) >= min_agreement]


def split_by_lr(
    samples: list[PreferenceSample], holdout: float, seed: int = 0
) -> tuple[list[PreferenceSample], list[PreferenceSample]]:
    """(train, held-out) by a hash of ``lr_key``: every pair of one LR image falls on the same side (no leakage)."""

    def u(key: str) -> float:
        h = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
        return int.from_bytes(h[:8], "little") / 2**64

    train = [s for s in samples if u(s.rec.lr_key) >= holdout]
    held = [s for s in samples if u(s.rec.lr_key) < holdout]
    return train, held
