"""Exact and near-duplicate removal over the images table of a whole run.

- **Exact**: same ``pixel_sha256`` (the hash of the decoded, normalised pixels and their shape), so a PNG and a BMP of
  the same picture, or two copies under different names, collapse even though their file bytes differ.
- **Near**: 64-bit DCT perceptual hashes (``imagehash.phash``, computed on a 32x32 downscale, hence invariant to
  resolution and mild recompression) within ``max_distance`` bits of Hamming distance. This catches the same
  picture at several sizes, recompressed or lightly edited.

The representative of an exact group is its smallest URI. The representative of a near group is the "best" member:
largest pixel count, then highest sharpness, then highest JPEG quality (non-JPEG counts as 100), then the smallest
URI — a total order, so the choice is deterministic. Others get
a reject ``exact_duplicate`` / ``near_duplicate`` with ``duplicate_of`` = the representative's key.

Near-duplicate search is all-pairs within buckets: the 64-bit hash is split into ``max_distance + 1`` bands, and by
the pigeonhole principle two hashes within ``max_distance`` bits agree exactly on at least one band, so only pairs
sharing a band value are compared (multi-index hashing, Norouzi et al. 2012). Groups are the connected components
of the "within distance" graph (union-find), so a chain a~b~c collapses into one group — conservative for a
training set, where leaking near-copies across the train/benchmark split is the worse error.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

DEDUP_VERSION = "dedup/1"


@dataclass(slots=True)
class DedupItem:
    key: str
    uri: str
    pixel_sha256: str
    phash: str  # 16 hex digits
    pixels: int
    sharpness: float
    jpeg_quality: float | None


@dataclass(slots=True)
class Duplicate:
    key: str
    uri: str
    reason: str  # exact_duplicate | near_duplicate
    duplicate_of: str
    distance: int  # Hamming distance of the perceptual hashes (0 for exact)


def _rank(it: DedupItem) -> tuple:
    q = 100.0 if it.jpeg_quality is None else it.jpeg_quality
    return (-it.pixels, -it.sharpness, -q, it.uri)


def find_duplicates(items: list[DedupItem], max_distance: int = 6) -> list[Duplicate]:
    """Every item that is not its group's representative, with the representative's key."""
    dups: list[Duplicate] = []
    # Exact duplicates first: keep the best of each pixel hash.
    by_pixels: dict[str, list[DedupItem]] = defaultdict(list)
    for it in items:
        by_pixels[it.pixel_sha256].append(it)
    unique = []
    for group in by_pixels.values():
        # Same pixels: only the URI tells copies apart (float scores of equal pixels may differ in the last bits,
        # since OpenCV's SIMD paths depend on buffer alignment, and must not decide).
        group.sort(key=lambda it: it.uri)
        unique.append(group[0])
        dups += [Duplicate(d.key, d.uri, "exact_duplicate", group[0].key, 0) for d in group[1:]]
    if max_distance < 0:
        return dups
    unique.sort(key=_rank)
    hashes = [int(it.phash, 16) for it in unique]
    parent = list(range(len(unique)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in _candidate_pairs(hashes, max_distance):
        if (hashes[a] ^ hashes[b]).bit_count() <= max_distance:
            ra, rb = find(a), find(b)
            if ra != rb:  # the lower index is the better-ranked item (unique is sorted by rank)
                parent[max(ra, rb)] = min(ra, rb)
    for i, it in enumerate(unique):
        root = find(i)
        if root != i:
            dist = (hashes[i] ^ hashes[root]).bit_count()
            dups.append(Duplicate(it.key, it.uri, "near_duplicate", unique[root].key, dist))
    return sorted(dups, key=lambda d: d.uri)


def _candidate_pairs(hashes: list[int], max_distance: int) -> set[tuple[int, int]]:
    bands = max_distance + 1
    width = 64 // bands
    pairs: set[tuple[int, int]] = set()
    for b in range(bands):
        shift = b * width
        bits = width if b < bands - 1 else 64 - shift
        mask = (1 << bits) - 1
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, h in enumerate(hashes):
            buckets[(h >> shift) & mask].append(i)
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
    return pairs
