import numpy as np

from pipelines.dedup import DedupItem, _candidate_pairs, find_duplicates


def item(key, phash, pixels=100, sharp=1.0, q=90.0, pix=None):
    return DedupItem(key, f"/{key}.jpg", pix or f"sha-{key}", phash, pixels, sharp, q)


def test_exact_duplicates_keep_the_first_uri_and_point_to_it():
    items = [item("b", "ff00ff00ff00ff00", pix="same"), item("a", "ff00ff00ff00ff00", pix="same")]
    (d,) = find_duplicates(items)
    assert (d.key, d.reason, d.duplicate_of, d.distance) == ("b", "exact_duplicate", "a", 0)


def test_near_duplicates_keep_the_largest():
    base = 0x0123456789ABCDEF
    items = [
        item("small", f"{base ^ 0b101:016x}", pixels=10),
        item("large", f"{base:016x}", pixels=1000),
        item("mid", f"{base ^ 0b1:016x}", pixels=100),
        item("other", f"{~base & (2**64 - 1):016x}", pixels=5),
    ]
    dups = {d.key: d for d in find_duplicates(items, max_distance=6)}
    assert set(dups) == {"small", "mid"}
    assert all(d.duplicate_of == "large" and d.reason == "near_duplicate" for d in dups.values())
    assert dups["small"].distance == 2


def test_distance_threshold_is_inclusive_and_can_be_disabled():
    a, b = item("a", "0" * 16, pixels=2), item("b", f"{0b111111:016x}")  # 6 bits apart
    assert len(find_duplicates([a, b], max_distance=6)) == 1
    assert find_duplicates([a, b], max_distance=5) == []
    assert find_duplicates([a, b], max_distance=-1) == []


def test_banded_candidates_find_every_pair_within_distance():
    """Multi-index hashing must not miss pairs: compare against brute force on random hashes."""
    rng = np.random.default_rng(1)
    base = [int(rng.integers(0, 2**63)) for _ in range(40)]
    hashes = base + [h ^ (1 << int(rng.integers(0, 64))) ^ (1 << int(rng.integers(0, 64))) for h in base]
    for dist in (2, 4, 6):
        cand = _candidate_pairs(hashes, dist)
        for i in range(len(hashes)):
            for j in range(i + 1, len(hashes)):
                if (hashes[i] ^ hashes[j]).bit_count() <= dist:
                    assert (i, j) in cand
