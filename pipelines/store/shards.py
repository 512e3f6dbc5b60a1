"""Webdataset shard writer: size/count-limited tars, atomic renames, a manifest and a Parquet key index.

Layout of one dataset split::

    shards/<dataset>/<split>-000000.tar     samples: <key>.hr.png, <key>.lr.png, <key>.json
    shards/<dataset>/manifest.json          per shard: name, count, bytes, sha256 (written last)
    shards/<dataset>/index.parquet          key -> shard (schemas.records.SHARD_INDEX)

Tars come from ``webdataset.TarWriter`` with a fixed mtime, user and group, so the same samples in the same order give
byte-identical shards (what makes resumed runs checkable). Each shard is written to a hidden temporary name and
renamed when closed; the manifest is replaced last, so a reader that trusts ``manifest.json`` never sees a partial
shard. Shards of an earlier, longer run that the new manifest does not list are removed.

Keys must not contain dots: webdataset splits ``<key>.<ext>`` at the first dot.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import webdataset as wds

from pipelines.store.workspace import temp_name, write_json_atomic, write_table
from schemas.records import SCHEMA_VERSION, SHARD_INDEX, ShardInfo, ShardManifest

FIXED_MTIME = 946684800.0  # 2000-01-01: a constant so rebuilds are byte-identical


@dataclass(slots=True)
class IndexRow:
    key: str
    shard: str
    split: str
    image_key: str
    schema_version: int = SCHEMA_VERSION


class _HashingFile:
    """A write-only file wrapper that hashes and counts what passes through (saves re-reading multi-GB shards)."""

    def __init__(self, f):
        self.f, self.sha, self.bytes, self.discard = f, hashlib.sha256(), 0, False

    def write(self, b) -> int:
        if self.discard:  # aborted: swallow the tar end blocks instead of writing to a closed file
            return len(b)
        self.sha.update(b)
        self.bytes += len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


class ShardWriter:
    """Write samples into ``<dir>/<split>-NNNNNN.tar``, starting a new shard at ``max_count`` samples or when the
    next sample would pass ``max_bytes`` (a single larger sample still gets a shard of its own)."""

    def __init__(self, out_dir: Path, split: str = "train", max_count: int = 1000, max_bytes: int = 2 << 30):
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        self.dir, self.split, self.max_count, self.max_bytes = Path(out_dir), split, max_count, max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[ShardInfo] = []
        self.index: list[IndexRow] = []
        self._tar = self._raw = self._hf = None
        self._tmp: Path | None = None
        self._count = self._payload = 0

    def write(self, key: str, files: dict[str, bytes], image_key: str = "") -> None:
        if "." in key or "/" in key or not key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' or '/'")
        size = sum(len(v) for v in files.values()) + 512 * (len(files) + 1)
        if self._tar is not None and (self._count >= self.max_count or self._payload + size > self.max_bytes):
            self._close()
        if self._tar is None:
            self._open()
        self._tar.write({"__key__": key, **files})
        self._count += 1
        self._payload += size
        self.index.append(IndexRow(key, self._name(), self.split, image_key))

    def _name(self) -> str:
        return f"{self.split}-{len(self.shards):06d}.tar"

    def _open(self) -> None:
        self._tmp = temp_name(self.dir / self._name())
        self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in _close or abort
        self._hf = _HashingFile(self._raw)
        self._tar = wds.TarWriter(self._hf, mtime=FIXED_MTIME, user="sr4k", group="sr4k", encoder=False)

    def _close(self) -> None:
        self._tar.close()  # writes the tar end blocks through _hf
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._tmp, self.dir / self._name())
        self.shards.append(ShardInfo(self._name(), self._count, self._hf.bytes, self._hf.sha.hexdigest()))
        self._tar = self._raw = self._hf = None
        self._count = self._payload = 0

    def finish(self, dataset: str, config_hash: str = "") -> ShardManifest:
        """Close the last shard, write index.parquet and manifest.json (last), drop stale shards of this split."""
        if self._tar is not None:
            self._close()
        write_table(self.dir / "index.parquet", self.index, SHARD_INDEX)
        manifest = ShardManifest(dataset, self.split, len(self.index), list(self.shards), config_hash)
        listed = {s.name for s in self.shards}
        for stale in self.dir.glob(f"{self.split}-*.tar"):
            if stale.name not in listed:
                stale.unlink()
        write_json_atomic(self.dir / "manifest.json", asdict(manifest))
        return manifest

    def abort(self) -> None:
        if self._tar is not None:
            self._hf.discard = True
            self._tar.close()
            self._raw.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = self._raw = self._hf = None


def write_shards(
    out_dir: Path, samples: Iterable[tuple[str, str, dict[str, bytes]]], dataset: str, split: str = "train", **limits
) -> ShardManifest:
    """Write (key, image_key, files) samples in the given order; see ShardWriter for the limits."""
    writer = ShardWriter(out_dir, split, **limits)
    try:
        for key, image_key, files in samples:
            writer.write(key, files, image_key)
    except BaseException:
        writer.abort()
        raise
    return writer.finish(dataset)
