"""Rounds of pairs in a workspace (pipelines.pairs.rounds): candidates read with bound values, earlier rounds
excluded, the round's part written and read back with DuckDB, the estimates file parsed with errors that name it."""

import json

import duckdb
import numpy as np
import pytest
from PIL import Image

from pipelines.pairs import rounds
from pipelines.store.workspace import Workspace, write_table
from schemas.bench import CANDIDATES, CandidateRec

MODELS = ["area", "bicubic", "lanczos", "nearest"]  # 6 model pairs per LR


def _workspace(root, sets=("b", "c"), n_lr=3) -> Workspace:
    """Candidates of ``MODELS`` on ``n_lr`` LRs per set, each output a distinct noise PNG (none near-identical)."""
    ws = Workspace(root)
    (ws.root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for s in sets:
        for i in range(n_lr):
            for m in MODELS:
                rel = f"images/{s}-{i}-{m}.png"
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(ws.root / rel)
                rows.append(CandidateRec(s, f"{s}{i}", m, f"{m}/1", rel, f"{s}{i}{m}", 16, 16, 0.0, 0.0, "u"))
    write_table(ws.part("candidates", "all"), rows, CANDIDATES)
    return ws


def _read(ws: Workspace, name: str, col: str = "pair_id") -> list:
    return sorted(
        r[0] for r in duckdb.execute(f"select {col} from read_parquet(?)", [str(ws.part("pairs", name))]).fetchall()
    )


def test_a_round_never_repeats_an_earlier_round_and_rebuilds_its_own(tmp_path):
    ws = _workspace(tmp_path / "it's [a] *work?space")  # quotes and glob characters: neither SQL nor a pattern
    r1 = rounds.build_round(ws, "round1", target=9, lr_set="b", min_distance=0.0)
    first = _read(ws, "round1")
    assert (r1["built"], r1["excluded"], len(first)) == (9, 0, 9) and r1["table"] == str(ws.part("pairs", "round1"))
    r2 = rounds.build_round(ws, "round2", target=9, lr_set="b", min_distance=0.0)
    second = _read(ws, "round2")
    assert r2["excluded"] == 9 and len(second) == 9 and not set(first) & set(second)  # b has 18 cells in all
    assert sorted(rounds.earlier_pair_ids(ws, "round1")) == second
    assert sorted(rounds.earlier_pair_ids(ws, "round3")) == sorted(first + second)
    again = rounds.build_round(ws, "round1", target=9, lr_set="b", min_distance=0.0)  # its own part is not earlier
    assert again["excluded"] == 9 and _read(ws, "round1") == sorted(set(_read(ws, "round1")) - set(second))
    with pytest.raises(ValueError, match="target"):
        rounds.build_round(ws, "round3", target=1, lr_set="b", min_distance=0.0)  # every cell of b is taken
    assert not ws.part("pairs", "round3").exists()


def test_candidates_of_one_set_only_and_names_checked_before_anything_is_written(tmp_path):
    ws = _workspace(tmp_path / "ws")
    assert {c["lr_set"] for c in rounds.read_candidates(ws, "c")} == {"c"}
    assert len(rounds.read_candidates(ws)) == 2 * 3 * len(MODELS)
    assert all(not c["output_path"].startswith("/") for c in rounds.read_candidates(ws))  # kept workspace-relative
    rounds.build_round(ws, "rc", target=4, lr_set="c", min_distance=0.0)
    assert set(_read(ws, "rc", "lr_key")) <= {"c0", "c1", "c2"}
    before = sorted(ws.root.rglob("*"))
    with pytest.raises(ValueError, match="is not a valid name"):
        rounds.build_round(ws, "x", target=2, lr_set="b' or '1'='1")
    with pytest.raises(ValueError, match=r"--name '\.\./x' is not a valid name"):
        rounds.build_round(ws, "../x", target=2)
    with pytest.raises(ValueError, match=r"no candidates in .* for d: run `sr4k candidates run`"):
        rounds.build_round(ws, "x", target=2, lr_set="d")
    assert sorted(ws.root.rglob("*")) == before


def test_estimates_files(tmp_path):
    plain = tmp_path / "scores.json"
    plain.write_text(json.dumps({"a": [1, 0.5], "b": [0.0, 0.25]}))
    assert rounds.load_estimates(plain) == {"a": (1.0, 0.5), "b": (0.0, 0.25)}
    with pytest.raises(ValueError, match="no criteria to choose from"):
        rounds.load_estimates(plain, ["consistency"])
    with pytest.raises(ValueError, match=r"missing.json does not exist \(run `sr4k aggregate`"):
        rounds.load_estimates(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match=r"bad\.json is not JSON"):
        rounds.load_estimates(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"expected labelling/ranking\.json or"):
        rounds.load_estimates(tmp_path / "list.json")
    rows = {"consistency": [("a", 1.0), ("b", -1.0)], "naturalness": [("a", -0.5), ("b", 0.5)]}
    ranking = tmp_path / "ranking.json"
    doc = {c: [{"model": m, "theta": t, "std": 0.1} for m, t in r] for c, r in rows.items()}
    ranking.write_text(json.dumps({"rankings": doc}))
    both = rounds.load_estimates(ranking)
    assert [e["a"][0] for e in both] == [1.0, -0.5]  # one estimate per criterion, in the file's order
    (nat,) = rounds.load_estimates(ranking, ["naturalness"])
    assert dict(nat) == {"a": (-0.5, 0.1), "b": (0.5, 0.1)}
