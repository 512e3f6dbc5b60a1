"""Contract with the real writers: a workspace labelled and aggregated by labelling/, released by
pipelines.release.build, reads back identically through both sources of load_preferences."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from training.reward.data import load_preferences

RELEASE_TESTS = Path(__file__).resolve().parents[2] / "pipelines" / "release" / "test_release.py"


@pytest.mark.slow
@pytest.mark.skipif(not RELEASE_TESTS.exists(), reason="the release writer's tests (workspace builder) are absent")
def test_workspace_and_release_agree(tmp_path):
    from pipelines.release.build import release

    spec = importlib.util.spec_from_file_location("release_tests_for_refreward", RELEASE_TESTS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ws = mod.build_labelled_workspace(tmp_path)
    out = Path(release(ws, "preferences", "refsr", "0.1.0", max_count=5)["path"])
    from_ws, from_rel = load_preferences(ws), load_preferences(out)
    assert len(from_ws) == len(from_rel) == 12
    by_id = {s.rec.pair_id: s for s in from_ws}
    for r in from_rel:
        w = by_id[r.rec.pair_id]
        assert (r.rec.consistency, r.rec.naturalness) == (w.rec.consistency, w.rec.naturalness)
        assert r.rec.naturalness_votes_a == w.rec.naturalness_votes_a
        for x, y in zip(r.load(), w.load(), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
